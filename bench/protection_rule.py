"""How fast the control plane answers GitHub as the deployment protection rule.

    python -m bench.protection_rule
    python -m bench.protection_rule --deploys 10

Starts the simulator (real time, webhooks to gunicorn), gunicorn, a Celery worker and
beat at default settings (:mod:`bench._processes`), the control plane authenticated
as a GitHub App whose rule guards the environment ``protected`` in the simulator.
Requests ``--deploys`` deploys one after the other through the API; GitHub (the
simulator) holds each deploy job and asks the App, the webhook reaches gunicorn, the
worker decides and answers through the run's callback. Then ``--outside`` runs are
started from "GitHub's UI" while the environment is frozen, which must be rejected.

Prints ``answer_seconds`` (from GitHub's request to the App's answer, as the
simulator saw both; p50, max and each, for the control plane's own deploys; the
target is within a second), ``outside_answer_seconds`` and the decisions.
"""

from __future__ import annotations

import argparse
import statistics
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench import emit
from bench._processes import Stack, call, prepare, setup_django, wait_until

REPOSITORY = "acme/deploy"
ENVIRONMENT = "protected"
RUNNERS = ("pr-primary", "pr-secondary")
APP_ID = 4242
INSTALLATION_ID = 77
WORKFLOW = Path(__file__).parent.parent / "deploys/workflows/deploy.yml"


def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def github(stack: Stack, method: str, path: str, body: Any) -> Any:
    """A call to the simulator's GitHub API as a repository admin."""
    return call(stack.sim_url + path, method, body, {"Authorization": "token admin"})


def set_up_github(stack: Stack) -> None:
    for name in RUNNERS:
        stack.sim("POST", "/_sim/runners", {"name": name, "labels": ["bench"]})
    stack.sim("POST", "/_sim/config", {"job_duration": 2})
    stack.sim(
        "PUT",
        f"/_sim/repos/{REPOSITORY}/workflows/deploy.yml",
        {"yaml": WORKFLOW.read_text()},
    )
    stack.sim(
        "PUT",
        f"/_sim/apps/{APP_ID}",
        {"slug": "runner-control-plane", "installation_id": INSTALLATION_ID},
    )
    github(stack, "PUT", f"/repos/{REPOSITORY}/environments/{ENVIRONMENT}", {})
    github(
        stack,
        "POST",
        f"/repos/{REPOSITORY}/environments/{ENVIRONMENT}/deployment_protection_rules",
        {"integration_id": APP_ID},
    )


def reviews(stack: Stack, run_id: int) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = stack.sim("GET", f"/_sim/runs/{run_id}/gate_reviews")
    return answer


def answer_seconds(stack: Stack, run_id: int) -> tuple[float, str]:
    wait_until(lambda: reviews(stack, run_id), 60, f"an answer for run {run_id}")
    [review] = reviews(stack, run_id)
    return review["answered_at"] - review["asked_at"], review["state"]


def dispatched(pk: int) -> Callable[[], int | None]:
    """The GitHub run id of deploy ``pk``'s attempt, once it has one."""
    from deploys.models import DeployAttempt

    def check() -> int | None:
        return (
            DeployAttempt.objects.filter(run_id=pk)
            .exclude(github_run_id=None)
            .values_list("github_run_id", flat=True)
            .first()
        )

    return check


def ended(pk: int) -> Callable[[], bool]:
    from deploys.models import DeployRun

    return lambda: DeployRun.objects.get(pk=pk).is_final


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--outside", type=int, default=3)
    args = parser.parse_args()

    var_dir, database_url, env = prepare("protection-rule")
    stack = Stack(env, var_dir / "stack.log", webhooks=True, before_demo=set_up_github)
    stack.env.pop("GITHUB_TOKEN")
    stack.env.update(
        {
            "GITHUB_APP_ID": str(APP_ID),
            "GITHUB_APP_INSTALLATION_ID": str(INSTALLATION_ID),
            "GITHUB_APP_PRIVATE_KEY": private_key_pem(),
        }
    )
    setup_django(database_url)
    from django.contrib.auth.models import Group, User
    from django.utils import timezone
    from knox.models import AuthToken

    from deploys.models import DeployRun, Environment, FreezeWindow
    from runners.models import Runner

    own: list[float] = []
    outside: list[float] = []
    decisions: dict[str, list[str]] = {"own": [], "outside": []}
    with stack:
        user = User.objects.create(username="bench-sre")
        user.groups.add(Group.objects.get(name="sre"))
        token = AuthToken.objects.create(user)[1]
        environment = Environment.objects.create(
            name=ENVIRONMENT, repository=REPOSITORY, workflow_file="deploy.yml"
        )
        environment.set_pool([Runner.objects.get(name=n) for n in RUNNERS])
        for _ in range(args.deploys):
            answer = call(
                f"{stack.web_url}/api/v1/deploys/",
                "POST",
                {"environment": ENVIRONMENT, "ref": "main"},
                {
                    "Authorization": f"Token {token}",
                    "Idempotency-Key": str(uuid.uuid4()),
                },
            )
            run = DeployRun.objects.get(pk=answer["id"])
            github_run_id = wait_until(
                dispatched(run.pk), 60, f"deploy {run.pk}'s dispatch", 0.05
            )
            seconds, state = answer_seconds(stack, int(github_run_id))
            own.append(round(seconds, 3))
            decisions["own"].append(state)
            wait_until(ended(run.pk), 120, f"deploy {run.pk} to end")
        now = timezone.now()
        FreezeWindow.objects.create(
            environment=environment,
            kind=FreezeWindow.Kind.ONE_OFF,
            reason="bench freeze",
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(hours=1),
        )
        for _ in range(args.outside):
            started = github(
                stack,
                "POST",
                f"/repos/{REPOSITORY}/actions/workflows/deploy.yml/dispatches",
                {
                    "ref": "main",
                    "inputs": {
                        "runner": RUNNERS[0],
                        "token": "manual",
                        "environment": ENVIRONMENT,
                        "sha": "",
                    },
                    "return_run_details": True,
                },
            )
            seconds, state = answer_seconds(stack, int(started["workflow_run_id"]))
            outside.append(round(seconds, 3))
            decisions["outside"].append(state)
    emit(
        {
            "answer_seconds": {
                "p50": round(statistics.median(own), 3),
                "max": max(own),
                "each": own,
            },
            "outside_answer_seconds": {
                "p50": round(statistics.median(outside), 3),
                "max": max(outside),
                "each": outside,
            },
            "decisions": decisions,
            "target_seconds": 1.0,
        }
    )


if __name__ == "__main__":
    main()
