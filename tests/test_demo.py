"""``manage.py demo`` against the simulator's demo fleet: environments, pools, deploy
rules, rotation schedules, the intended inventory and first deploys, once."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from controlplane.models import AuditEvent
from deploys import engine, signoff
from deploys.models import DeployRun, Environment
from deploys.request_errors import RuleRefused
from deploys.triggers import request_deploy
from diagnostics.models import HostRun
from githubsim import Simulator
from inventory import drift
from inventory.models import InventoryLoad
from rotations.models import SecretRotationSchedule
from tests.conftest import ROOT, logged_in

pytestmark = [pytest.mark.django_db, pytest.mark.sim(demo=True, connect=True)]

# What dev.py points INVENTORY_PATH at.
DEMO_INVENTORY = ROOT / "inventory" / "demo-hosts.ini"


def demo(sim: Simulator) -> str:
    out = StringIO()
    call_command("demo", "--simulator", sim.url, "--history", stdout=out)
    return out.getvalue()


def test_demo_creates_environments_schedules_and_first_deploys_once(
    sim: Simulator, admin_user: User
) -> None:
    first = demo(sim)

    assert "4 environments, 4 secret schedules and 2 git refs created" in first
    assert "3 deploys requested" in first
    pools = {
        env.name: [entry.runner.name for entry in env.pool()]
        for env in Environment.objects.all()
    }
    assert pools == {
        "production": ["prod-primary-1", "prod-secondary-1", "prod-secondary-2"],
        "staging": ["staging-1", "staging-2"],
        "production-eu": ["prod-secondary-2", "prod-secondary-1"],
        "billing": ["build-1", "build-2"],
    }
    policies = set(
        Environment.objects.values_list("name", "heartbeat_policy", "exporter_policy")
    )
    assert policies == {
        ("production", "required", "required"),
        ("staging", "required", "advisory"),
        ("production-eu", "required", "required"),
        ("billing", "required", "required"),
    }
    # Production and staging keep no rule and need no approval: their first
    # deploys go out (and fail over) by themselves.
    rules = set(
        Environment.objects.values_list(
            "name",
            "production",
            "promote_from__name",
            "allowed_refs",
            "signoffs_required",
        )
    )
    assert rules == {
        ("production", True, None, "", 0),
        ("staging", False, None, "", 0),
        ("production-eu", True, "staging", "refs/heads/main refs/tags/v*", 1),
        ("billing", True, None, "", 1),
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
    # No other SRE: the admin requested billing's deploy too.
    assert [(r.environment.name, r.state, r.requester) for r in runs] == [
        ("production", "queued", admin_user),
        ("staging", "queued", admin_user),
        ("billing", "queued", admin_user),
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

    assert "0 environments, 0 secret schedules and 0 git refs created" in again
    assert "0 deploys requested" in again
    assert "0 diagnostics reports stored" in again
    assert HostRun.objects.count() == 2
    assert (
        AuditEvent.objects.filter(action="runner.diagnostics_reported").count()
        == reported
    )
    assert DeployRun.objects.count() == 3
    assert Environment.objects.count() == 4
    assert SecretRotationSchedule.objects.count() == 4
    assert AuditEvent.objects.filter(action="secret.audit").count() == audits


def test_demo_leaves_an_edited_pool_alone(sim: Simulator) -> None:
    demo(sim)
    production = Environment.objects.get(name="production")
    production.set_pool([production.pool()[1].runner])

    demo(sim)

    assert [e.runner.name for e in production.pool()] == ["prod-secondary-1"]


def test_demo_inventory_drifts_from_the_fleet_once(
    sim: Simulator, admin_user: User, settings: Any
) -> None:
    settings.INVENTORY_PATH = str(DEMO_INVENTORY)

    first = demo(sim)

    assert f"inventory loaded from {DEMO_INVENTORY}: 8 runners expected" in first
    found = drift.compute()
    assert found is not None
    assert [r.name for r in found.rogue] == ["canary-1"]
    assert [(m.name, m.host, m.status) for m in found.missing] == [
        ("prod-secondary-3", "prod-secondary-3.dc2.acme.internal", "never_registered")
    ]
    assert [(d.name, d.absent, d.unexpected) for d in found.labels] == [
        ("build-2", ["docker"], [])
    ]
    client = logged_in(admin_user)
    page = client.get("/inventory/").content.decode()
    assert 'data-rogue="canary-1"' in page
    assert 'data-missing="prod-secondary-3"' in page
    assert 'data-labels="build-2"' in page
    board = client.get("/").content.decode()
    assert "1 runner rogue (in GitHub, not in the inventory)" in board
    assert "1 runner missing (in the inventory, not in GitHub)" in board

    again = demo(sim)

    assert f"the inventory file {DEMO_INVENTORY} was read already, unchanged" in again
    assert InventoryLoad.objects.count() == 1


def test_demo_without_inventory_path_loads_no_inventory(
    sim: Simulator, settings: Any
) -> None:
    settings.INVENTORY_PATH = ""

    out = demo(sim)

    assert "no INVENTORY_PATH: no intended inventory loaded" in out
    assert not InventoryLoad.objects.exists()


def test_demo_billing_deploy_awaits_the_admins_approval(
    sim: Simulator, admin_user: User, sre: User
) -> None:
    demo(sim)
    billing = DeployRun.objects.get(environment__name="billing")
    # Requested by the other SRE, so the admin who logs in may approve it.
    assert billing.requester == sre
    assert DeployRun.objects.get(environment__name="production").requester == (
        admin_user
    )

    engine.advance(billing.pk)

    billing.refresh_from_db()
    assert billing.state == DeployRun.State.GATING
    assert not billing.attempts.exists()
    held = signoff.verdict(billing, timezone.now())
    assert (held.satisfied, held.awaited_from) == (False, "any SRE but sam-sre")
    page = logged_in(admin_user).get(f"/deploys/{billing.pk}/").content.decode()
    assert "awaiting approval" in page
    assert "1 more from any SRE but sam-sre" in page


def test_demo_production_eu_takes_only_what_staging_ran(
    sim: Simulator, admin_user: User
) -> None:
    demo(sim)
    assert not DeployRun.objects.filter(environment__name="production-eu").exists()
    # The release tag the rules allow is main's commit; the branch is one ahead.
    main_sha = sim.state.resolve_ref("acme/deploy", "main")
    assert sim.state.git_ref("acme/deploy", "tags/v1.0.0")[1] == main_sha
    assert sim.state.ancestry(
        "acme/deploy", sim.state.resolve_ref("acme/deploy", "feature/retry-budget")
    )[1:] == [main_sha]

    # main has not succeeded in staging yet; the feature branch never may go.
    with pytest.raises(RuleRefused) as main:
        request_deploy(admin_user, "production-eu", "main")
    with pytest.raises(RuleRefused) as feature:
        request_deploy(admin_user, "production-eu", "feature/retry-budget")

    assert main.value.code == "not_promoted"
    assert "Deploy it to staging first" in main.value.message
    assert feature.value.code == "ref_not_allowed"
    page = (
        logged_in(admin_user)
        .get("/deploys/environments/production-eu/")
        .content.decode()
    )
    assert "only commits that succeeded in" in page
    assert "refs/tags/v*" in page
    assert "1 approval in the control plane required" in page
