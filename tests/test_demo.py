"""``manage.py demo`` against the simulator's demo fleet: environments, pools,
rotation schedules and first deploys, once."""

from __future__ import annotations

from io import StringIO

import pytest
import requests
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from controlplane.models import AuditEvent
from deploys.models import DeployRun, Environment
from diagnostics.models import HostRun
from githubsim import Simulator
from rotations.models import SecretRotationSchedule
from tests.conftest import logged_in

pytestmark = [pytest.mark.django_db, pytest.mark.sim(demo=True, connect=True)]


def demo(sim: Simulator) -> str:
    out = StringIO()
    call_command("demo", "--simulator", sim.url, "--history", stdout=out)
    return out.getvalue()


def test_demo_creates_environments_schedules_and_first_deploys_once(
    sim: Simulator, admin_user: User
) -> None:
    first = demo(sim)

    assert "2 environments and 4 secret schedules created" in first
    assert "2 deploys requested" in first
    pools = {
        env.name: [entry.runner.name for entry in env.pool()]
        for env in Environment.objects.all()
    }
    assert pools == {
        "production": ["prod-primary-1", "prod-secondary-1", "prod-secondary-2"],
        "staging": ["staging-1", "staging-2"],
    }
    policies = set(
        Environment.objects.values_list("name", "heartbeat_policy", "exporter_policy")
    )
    assert policies == {
        ("production", "required", "required"),
        ("staging", "required", "advisory"),
    }
    now = timezone.now()
    statuses = {s.name: s.status_at(now) for s in SecretRotationSchedule.objects.all()}
    assert statuses == {
        "DEPLOY_KEY": "due_soon",
        "REGISTRY_TOKEN": "overdue",
        "PROD_DB_PASSWORD": "ok",
        "STAGING_DB_PASSWORD": "ok",
    }
    runs = DeployRun.objects.order_by("pk")
    assert [(r.environment.name, r.state, r.requester) for r in runs] == [
        ("production", "queued", admin_user),
        ("staging", "queued", admin_user),
    ]

    # The production primary's page shows a diagnostics report, its history and
    # what changed since the previous one.
    assert "2 diagnostics reports stored" in first
    reports = HostRun.objects.filter(reported_at__isnull=False)
    assert [r.runner.name for r in reports] == ["prod-primary-1"] * 2
    page = logged_in(admin_user).get("/fleet/prod-primary-1/").content.decode()
    assert 'id="diagnostics-facts"' in page
    assert 'id="diagnostics-history"' in page
    assert "2.329.0 &rarr; <strong>2.330.0</strong>" in page
    assert "No diagnostics report yet." not in page

    # The shipped canary workflow is in the simulator's repository, so canaries run.
    canary = requests.get(
        f"{sim.url}/_sim/repos/acme/deploy/workflows/runner-canary.yml", timeout=10
    )
    assert canary.status_code == 200, canary.text
    assert "refused the canary workflow" not in first

    audits = AuditEvent.objects.filter(action="secret.audit").count()
    assert audits == 1
    reported = AuditEvent.objects.filter(action="runner.diagnostics_reported").count()
    assert reported == 2
    again = demo(sim)

    assert "0 environments and 0 secret schedules created" in again
    assert "0 deploys requested" in again
    assert "0 diagnostics reports stored" in again
    assert HostRun.objects.count() == 2
    assert (
        AuditEvent.objects.filter(action="runner.diagnostics_reported").count()
        == reported
    )
    assert DeployRun.objects.count() == 2
    assert SecretRotationSchedule.objects.count() == 4
    assert AuditEvent.objects.filter(action="secret.audit").count() == audits


def test_demo_leaves_an_edited_pool_alone(sim: Simulator) -> None:
    demo(sim)
    production = Environment.objects.get(name="production")
    production.set_pool([production.pool()[1].runner])

    demo(sim)

    assert [e.runner.name for e in production.pool()] == ["prod-secondary-1"]
