"""Trust overrides: an SRE vouches for a runner's deploys for a bounded time, with a
reason; audited, shown everywhere, counted, ending by itself, never for a runner
GitHub reports offline."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from controlplane.models import AuditEvent
from deploys.engine.gate import decide
from deploys.models import DeployRun
from runners import trust
from runners.models import Flag, Reason, Runner, RunnerEvent, State
from tests.factories import make_env, pool_runner
from tests.test_runner_metrics import scrape

pytestmark = pytest.mark.django_db

TRUST_URL = "/api/v1/runners/prod-primary/trust/"


def github_only(name: str = "prod-primary", **kw: object) -> Runner:
    """Online in GitHub, nothing else reports: unknown, no deploys."""
    kw.setdefault("github_status", "online")
    return Runner.objects.create(
        name=name,
        state=State.UNKNOWN,
        reason=Reason.GITHUB_ONLY,
        observed_flags=int(Flag.GITHUB_ONLINE),
        **kw,
    )


def post(client: Client, url: str, body: dict[str, object] | None = None) -> object:
    return client.post(url, body or {}, content_type="application/json")


def test_sre_trusts_a_runner_through_the_api_and_deploys_go_to_it(
    sre_client: Client, sre: User
) -> None:
    primary = github_only()
    secondary = pool_runner("prod-secondary")
    env = make_env("production", primary, secondary)
    assert env.pick_runner()[0] == secondary

    response = sre_client.post(
        TRUST_URL,
        {"reason": "exporter behind the firewall, INC-7", "hours": 2},
        content_type="application/json",
    )

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["trusted"].startswith(f"trusted by {sre.username} until ")
    assert body["trusted"].endswith(": exporter behind the firewall, INC-7")
    chosen, pool = env.pick_runner()
    assert chosen == primary
    assert pool[0].trusted
    assert pool[0].notes == [
        "unknown (only GitHub reports it): overridden, " + body["trusted"]
    ]
    row = AuditEvent.objects.get(action="runner.trust")
    assert row.actor == sre
    assert row.detail["reason"] == "exporter behind the firewall, INC-7"
    assert primary.events.filter(kind=RunnerEvent.Kind.TRUSTED).count() == 1


def test_the_override_ends_by_itself(sre: User) -> None:
    primary = github_only()
    secondary = pool_runner("prod-secondary")
    env = make_env("production", primary, secondary)
    now = timezone.now()
    trust.grant(primary, sre, "firewall", timedelta(hours=1), now)

    with time_machine.travel(now + timedelta(minutes=59)):
        assert env.pick_runner()[0] == primary
    with time_machine.travel(now + timedelta(minutes=61)):
        chosen, pool = env.pick_runner()
        assert chosen == secondary
        assert not pool[0].trusted
        assert pool[0].passed_over == ["unknown (only GitHub reports it)"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"hours": 2}, "reason"),
        ({"reason": " ", "hours": 2}, "reason"),
        ({"reason": "x", "hours": 25}, "hours"),
        ({"reason": "x", "hours": 0}, "hours"),
        ({"reason": "x"}, "hours"),
    ],
)
def test_bad_input_is_refused_with_a_400(
    sre_client: Client, body: dict[str, object], says: str
) -> None:
    github_only()

    response = sre_client.post(TRUST_URL, body, content_type="application/json")

    assert response.status_code == 400
    assert says in response.content.decode()
    assert not Runner.objects.get().trusted_until


def test_a_runner_github_reports_offline_is_never_trusted(sre_client: Client) -> None:
    github_only(github_status="offline")

    response = sre_client.post(
        TRUST_URL, {"reason": "x", "hours": 1}, content_type="application/json"
    )

    assert response.status_code == 400
    assert "GitHub reports prod-primary offline" in response.json()["detail"]
    assert not AuditEvent.objects.filter(action="runner.trust").exists()


def test_an_override_in_force_stops_counting_when_github_says_offline(
    sre: User,
) -> None:
    primary = github_only()
    env = make_env("production", primary)
    trust.grant(primary, sre, "firewall", timedelta(hours=1), timezone.now())
    Runner.objects.filter(pk=primary.pk).update(github_status="offline")

    chosen, pool = env.pick_runner()

    assert chosen is None
    assert "trust override not counted: GitHub reports the runner offline" in (
        pool[0].notes
    )


def test_a_drained_runner_stays_out_even_when_trusted(sre: User) -> None:
    primary = github_only(drained=True, drained_by="sam", drained_reason="kernel")
    env = make_env("production", primary)
    trust.grant(primary, sre, "firewall", timedelta(hours=1), timezone.now())

    assert env.pick_runner()[0] is None


def test_viewers_cannot_trust_and_sres_clear_early(
    viewer_client: Client, sre_client: Client, sre: User
) -> None:
    primary = github_only()
    trust.grant(primary, sre, "firewall", timedelta(hours=1), timezone.now())

    denied = viewer_client.post("/api/v1/runners/prod-primary/untrust/")
    cleared = sre_client.post("/api/v1/runners/prod-primary/untrust/")

    assert denied.status_code == 403
    assert cleared.status_code == 202
    assert cleared.json()["trusted"] is None
    primary.refresh_from_db()
    assert primary.trusted_until is None
    assert AuditEvent.objects.get(action="runner.untrust").detail["how"] == (
        "ended early"
    )


def test_the_gate_decision_list_carries_the_badge_text(sre: User) -> None:
    primary = github_only()
    env = make_env("production", primary, pool_runner("prod-secondary"))
    trust.grant(primary, sre, "firewall", timedelta(hours=3), timezone.now())
    run = DeployRun.objects.create(environment=env, ref="main", requester_name="x")

    decision = decide(run, timezone.now())
    chosen, considered = decision.runner, decision.considered

    assert chosen == primary
    assert considered[0]["trusted"].endswith(": firewall")
    assert considered[0]["chosen"] is True
    assert "trusted" not in considered[1]


def test_every_page_that_shows_the_runner_shows_the_badge(
    sre_client: Client, sre: User
) -> None:
    primary = github_only()
    make_env("production", primary, pool_runner("prod-secondary"))
    trust.grant(primary, sre, "firewall INC-7", timedelta(hours=3), timezone.now())
    badge = f"trusted by {sre.username} until "

    for url in (
        "/",
        "/fleet/",
        "/fleet/prod-primary/",
        "/deploys/environments/",
        "/deploys/environments/production/",
        "/deploys/new/preview/?environment=production",
    ):
        page = sre_client.get(url).content.decode()
        assert badge in page and ": firewall INC-7" in page, url


def test_the_runner_page_form_trusts_and_refuses_with_a_reason(
    sre_client: Client,
) -> None:
    github_only()

    refused = sre_client.post(
        "/fleet/prod-primary/trust/", {"reason": "", "hours": "4"}
    )
    granted = sre_client.post(
        "/fleet/prod-primary/trust/", {"reason": "firewall", "hours": "4"}
    )

    assert refused.status_code == 400
    assert "This field is required" in refused.content.decode()
    assert granted.status_code == 302
    assert Runner.objects.get().trusted_reason == "firewall"


def test_metrics_count_overrides_and_the_ones_that_ran_out(
    client: Client, sre: User
) -> None:
    now = timezone.now()
    in_force = github_only("a")
    ran_out = github_only("b")
    trust.grant(in_force, sre, "x", timedelta(hours=2), now)
    trust.grant(ran_out, sre, "y", timedelta(minutes=1), now - timedelta(minutes=11))

    samples = scrape(client)

    assert samples["controlplane_runner_trust_overrides"] == 1
    assert samples['controlplane_runner_trusted{runner="a"}'] == 1
    assert 'controlplane_runner_trusted{runner="b"}' not in samples
    assert samples['controlplane_runner_trust_expired_seconds{runner="b"}'] >= 600
    assert 'controlplane_runner_trust_expired_seconds{runner="a"}' not in samples
    # Dismissing the ended override ends its series (and the alert).
    assert trust.clear(ran_out, sre, timezone.now())
    assert 'controlplane_runner_trust_expired_seconds{runner="b"}' not in scrape(client)
