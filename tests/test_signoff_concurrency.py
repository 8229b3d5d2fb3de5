"""Approvals in the control plane given at the same moment, on PostgreSQL: each
counts once, in order (the deploy's row is locked while a decision is taken), and
one SRE clicking twice is counted once. SQLite runs one writer at a time, so the
race cannot happen there: these tests skip on it and CI runs them on PostgreSQL.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections

from deploys import signoff
from deploys.models import DeployEvent, DeployRun, Environment, SignOff
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners.models import Runner, State
from tests.conftest import make_user

POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
ROUNDS = 5
SRES = 6

pytestmark = [
    pytest.mark.skipif(
        not POSTGRES,
        reason="needs PostgreSQL (set DATABASE_URL): SQLite runs one writer at a "
        "time, so concurrent approvals cannot race there",
    ),
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def env(github: Simulator) -> Environment:
    # No eligible runner: woken deploys wait at the gate without calling GitHub.
    runner = Runner.objects.create(name="prod-1", state=State.UNHEALTHY)
    environment = Environment.objects.create(
        name="production", repository="acme/deploy", signoffs_required=SRES
    )
    environment.set_pool([runner])
    return environment


def all_at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` for i in range(count), released together by a barrier."""
    barrier = threading.Barrier(count)

    def task(i: int) -> Any:
        try:
            barrier.wait(timeout=30)
            return work(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


def decide(act: Callable[[], Any]) -> str:
    try:
        act()
    except signoff.SignOffRefused as exc:
        return exc.code
    return "ok"


def test_approvals_given_at_once_each_count_once_in_order(
    env: Environment, sre: User
) -> None:
    sres = [make_user(f"sre-{i}", "sre") for i in range(SRES)]
    for _ in range(ROUNDS):
        run = request_deploy(sre, env, "main").run

        def approve(i: int, r: DeployRun = run) -> str:
            return decide(lambda: signoff.approve(r, sres[i]))

        answers = all_at_once(SRES, approve)

        assert answers == ["ok"] * SRES
        judged = signoff.verdict(run, run.created_at)
        assert judged.satisfied
        assert sorted(a.by for a in judged.approvals) == [u.username for u in sres]
        counts = sorted(
            int(re.search(r"\((\d+) of", message).group(1))  # type: ignore[union-attr]
            for message in run.events.filter(
                kind=DeployEvent.Kind.SIGNOFF_APPROVED
            ).values_list("message", flat=True)
        )
        # Each saw the ones before it: 1 of 6 … 6 of 6, never two "1 of 6".
        assert counts == list(range(1, SRES + 1))
        run.cancel("sam-sre", "next round")


def test_one_sre_clicking_twice_at_once_is_counted_once(
    env: Environment, sre: User
) -> None:
    carol = make_user("carol-sre", "sre")
    for _ in range(ROUNDS):
        run = request_deploy(sre, env, "main").run

        def click(_: int, r: DeployRun = run) -> str:
            return decide(lambda: signoff.approve(r, carol))

        answers = all_at_once(2, click)

        assert sorted(answers)[1] == "ok"
        assert sorted(answers)[0] in ("already_approved", "already_decided")
        assert SignOff.objects.filter(run=run).count() == 1
        assert run.events.filter(kind=DeployEvent.Kind.SIGNOFF_APPROVED).count() == 1
        run.cancel("sam-sre", "next round")


def test_an_approval_and_a_rejection_at_once_leave_the_deploy_rejected(
    env: Environment, sre: User
) -> None:
    carol = make_user("carol-sre", "sre")
    dan = make_user("dan-sre", "sre")
    for _ in range(ROUNDS):
        run = request_deploy(sre, env, "main").run

        def approve_or_reject(i: int, r: DeployRun = run) -> str:
            if i == 0:
                return decide(lambda: signoff.approve(r, carol))
            return decide(lambda: signoff.reject(r, dan, "no"))

        answers = all_at_once(2, approve_or_reject)

        run.refresh_from_db()
        assert run.reason == DeployRun.Reason.REJECTED
        assert answers[1] == "ok"
        # The approval came first (and counted), or found the deploy finished.
        assert answers[0] in ("ok", "finished")
        approvals = SignOff.objects.filter(run=run, decision="approved").count()
        assert approvals == (1 if answers[0] == "ok" else 0)
