"""Changes made in the Django admin are audited like the same change through the
API; refused deploy requests are audited; every action is named ``object.verb``;
the audit page links each target to its page; the environment form edits secrets
as a list and says timeouts are seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from controlplane.audit import ACTION_NAME
from controlplane.models import AuditEvent
from deploys.models import Environment
from deploys.request_errors import DeployRequestError
from deploys.triggers import request_deploy
from rotations.models import SecretRotationSchedule
from runners.models import Runner
from tests.conftest import ROOT
from tests.factories import make_env, make_runner, make_schedule

pytestmark = pytest.mark.django_db


def env_form(env: Environment, **changes: str) -> dict[str, str]:
    data = {
        "name": env.name,
        "repository": env.repository,
        "workflow_file": env.workflow_file,
        "default_ref": env.default_ref,
        "pickup_timeout": str(env.pickup_timeout),
        "gate_timeout": str(env.gate_timeout),
        "busy_wait": str(env.busy_wait),
        "approval_timeout": str(env.approval_timeout),
        "promotion_period_hours": str(env.promotion_period_hours),
        "signoffs_required": str(env.signoffs_required),
        "signoff_ttl": str(env.signoff_ttl),
        "github_environment": env.github_environment,
        "heartbeat_policy": env.heartbeat_policy,
        "exporter_policy": env.exporter_policy,
        "canary_policy": env.canary_policy,
        "canary_interval_minutes": str(env.canary_interval_minutes),
        "max_attempts": str(env.max_attempts),
        "required_secrets": "\n".join(env.required_secrets),
        "policy": env.policy,
        "pool_entries-TOTAL_FORMS": "0",
        "pool_entries-INITIAL_FORMS": "0",
        "freeze_windows-TOTAL_FORMS": "0",
        "freeze_windows-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return data


def test_an_environment_edited_in_the_admin_is_audited_with_its_fields(
    admin_client: Client, admin_user: User
) -> None:
    env = make_env()
    url = f"/admin/deploys/environment/{env.pk}/change/"

    response = admin_client.post(
        url,
        env_form(
            env,
            gate_timeout="600",
            paused="on",
            required_secrets="DEPLOY_KEY\n\n  PROD_DB_PASSWORD  \n",
        ),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    env.refresh_from_db()
    assert env.required_secrets == ["DEPLOY_KEY", "PROD_DB_PASSWORD"]
    event = AuditEvent.objects.get(action="environment.update")
    assert event.actor == admin_user
    assert event.target_id == str(env.pk)
    assert event.detail == {
        "via": "admin",
        "fields": ["gate_timeout", "paused", "required_secrets"],
    }


def test_a_pool_edited_in_the_admin_is_audited(admin_client: Client) -> None:
    env = make_env()
    primary = make_runner("prod-primary-1")
    secondary = make_runner("prod-secondary-1")

    admin_client.post(
        f"/admin/deploys/environment/{env.pk}/change/",
        env_form(
            env,
            **{
                "pool_entries-TOTAL_FORMS": "2",
                "pool_entries-0-runner": str(primary.pk),
                "pool_entries-0-position": "0",
                "pool_entries-1-runner": str(secondary.pk),
                "pool_entries-1-position": "1",
            },
        ),
    )

    event = AuditEvent.objects.get(action="environment.pool_update")
    assert event.detail["pool"] == ["prod-primary-1", "prod-secondary-1"]


def test_environment_create_and_delete_in_the_admin_are_audited(
    admin_client: Client,
) -> None:
    admin_client.post(
        "/admin/deploys/environment/add/",
        env_form(
            Environment(name="staging", repository="acme/deploy"),
        ),
    )
    env = Environment.objects.get(name="staging")
    admin_client.post(f"/admin/deploys/environment/{env.pk}/delete/", {"post": "yes"})

    assert list(
        AuditEvent.objects.order_by("pk").values_list("action", "target_repr")
    ) == [("environment.create", "staging"), ("environment.delete", "staging")]


def test_runner_schedule_and_beat_task_edits_in_the_admin_are_audited(
    admin_client: Client,
) -> None:
    runner = make_runner("prod-1")
    schedule = make_schedule("DEPLOY_KEY")
    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="sweep", task="runners.tasks.health_sweep", interval=every
    )

    admin_client.post(
        f"/admin/runners/runner/{runner.pk}/change/",
        {
            "name": "prod-1",
            "labels": '["self-hosted"]',
            "os": "",
            "host": "prod-1.example",
            "exporter_url": "",
        },
    )
    admin_client.post(
        f"/admin/rotations/secretrotationschedule/{schedule.pk}/delete/",
        {"post": "yes"},
    )
    admin_client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "disable_tasks", "_selected_action": [str(task.pk)]},
    )

    actions = dict(AuditEvent.objects.values_list("action", "target_repr"))
    assert actions["runner.update"] == "prod-1"
    assert AuditEvent.objects.get(action="runner.update").detail == {
        "via": "admin",
        "fields": ["host", "labels"],
    }
    assert "secret_schedule.delete" in actions
    assert "periodic_task.disable" in actions
    assert not SecretRotationSchedule.objects.exists()
    assert Runner.objects.get().host == "prod-1.example"


def test_the_environment_form_edits_secrets_as_a_list_with_units(
    admin_client: Client,
) -> None:
    env = make_env(required_secrets=["DEPLOY_KEY", "PROD_DB_PASSWORD"])

    html = admin_client.get(f"/admin/deploys/environment/{env.pk}/change/").content
    page = html.decode()

    assert re.search(
        r"<textarea[^>]*required_secrets[^>]*>\s*DEPLOY_KEY\nPROD_DB_PASSWORD</textarea>",
        page,
    )
    assert "Pickup timeout (seconds)" in page
    assert "Gate timeout (seconds)" in page
    # created_at is shown, not editable.
    assert 'name="created_at' not in page
    assert "Created at" in page


def test_a_bad_secret_name_in_the_list_is_a_form_error(admin_client: Client) -> None:
    env = make_env()

    response = admin_client.post(
        f"/admin/deploys/environment/{env.pk}/change/",
        env_form(env, required_secrets="DEPLOY_KEY\nnot a name!"),
    )

    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not AuditEvent.objects.filter(action="environment.update").exists()


def test_a_refused_deploy_request_is_audited(sre: User) -> None:
    make_env(paused=True, paused_reason="database migration")

    with pytest.raises(DeployRequestError):
        request_deploy(sre, "production", "main")

    event = AuditEvent.objects.get(action="deploy.request")
    assert event.outcome == AuditEvent.Outcome.DENIED
    assert event.actor == sre
    assert event.detail["environment"] == "production"
    assert event.detail["code"] == "refused"
    assert event.detail["reason"] == (
        "deploys to this environment are paused: database migration"
    )


def test_every_audited_action_in_the_code_is_named_object_verb() -> None:
    sources = [
        p
        for folder in ("controlplane", "runners", "deploys", "rotations", "diagnostics")
        for p in Path(ROOT, folder).rglob("*.py")
        if "migrations" not in p.parts
    ]
    found: set[str] = set()
    for path in sources:
        text = path.read_text()
        for call in re.finditer(r"audit\.record\(\s*[^,]+,\s*f?\"([^\"]+)\"", text):
            found.add(call.group(1))
    assert "runner.drain" in found and "session.login" in found
    literal = {name for name in found if "{" not in name}
    assert [name for name in literal if not ACTION_NAME.fullmatch(name)] == []
    documented = Path(ROOT, "controlplane/audit.py").read_text()
    assert [name for name in literal if f"``{name}``" not in documented] == []


def test_the_audit_page_links_targets_and_keeps_the_time_on_one_line(
    admin_client: Client, admin_user: User
) -> None:
    runner = make_runner("prod-1")
    runner.drain(admin_user, "kernel upgrade")
    env = make_env()
    env.paused = True
    schedule = make_schedule(
        "DEPLOY_KEY", last_checked_at=timezone.now() - timedelta(1)
    )
    from controlplane import audit

    audit.record(admin_user, "environment.update", env, fields=["paused"])
    audit.record(admin_user, "secret_schedule.update", schedule)

    html = admin_client.get("/audit/").content.decode()

    assert '<a href="/fleet/prod-1/" class="target">prod-1</a>' in html
    assert '<a href="/deploys/environments/production/" class="target">' in html
    assert f'<a href="/secrets/{schedule.pk}/" class="target">' in html
    assert '<td class="nowrap"><time' in html
