"""The Webhooks page (SREs and admins), its navigation entry, the outcome metric and
the admin pages."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from deploys.models import DeployRun, Environment, WebhookDelivery, WebhookRedelivery
from tests.clients import scrape

pytestmark = pytest.mark.django_db
Outcome = WebhookDelivery.Outcome


def make_delivery(outcome: str = Outcome.MATCHED, **kw: Any) -> WebhookDelivery:
    options: dict[str, Any] = {
        "delivery_id": str(uuid.uuid4()),
        "event": "workflow_job",
        "action": "queued",
        "payload": {},
        "outcome": outcome,
        "repository": "acme/deploy",
    }
    options.update(kw)
    return WebhookDelivery.objects.create(**options)


def make_history(n: int = 1) -> DeployRun:
    env = Environment.objects.create(
        name="production", repository="acme/deploy", workflow_file="deploy.yml"
    )
    run = DeployRun.objects.create(environment=env, ref="main")
    for _ in range(n):
        make_delivery(Outcome.MATCHED, github_run_id=42, deploy_run=run)
        make_delivery(
            Outcome.IGNORED,
            repository="someone/else",
            reason="repository someone/else is not managed here",
        )
        make_delivery(
            Outcome.FAILED, event="workflow_run", payload=None, error="KeyError: 'id'"
        )
    return run


def test_sres_see_every_delivery_with_its_outcome_reason_and_deploy(
    sre_client: Client,
) -> None:
    run = make_history()

    page = sre_client.get("/webhooks/").content.decode()

    assert "repository someone/else is not managed here" in page
    assert "KeyError: &#x27;id&#x27;" in page
    assert f'href="/deploys/{run.pk}/"' in page
    assert page.count("badge badge-matched") == 2  # the summary and the row
    assert "3 deliveries." in page


def test_filters_narrow_by_outcome_event_and_time(sre_client: Client) -> None:
    make_history()
    old = make_delivery(
        Outcome.UNMATCHED, received_at=timezone.now() - timedelta(days=2)
    )

    failed = sre_client.get("/webhooks/", {"outcome": "failed"}).content.decode()
    runs = sre_client.get("/webhooks/", {"event": "workflow_run"}).content.decode()
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    recent = sre_client.get("/webhooks/", {"received_after": since}).content.decode()

    assert "1 delivery." in failed and "KeyError" in failed
    assert "1 delivery." in runs
    assert "3 deliveries." in recent and old.delivery_id not in recent


def test_a_bad_filter_value_is_shown_not_a_server_error(sre_client: Client) -> None:
    response = sre_client.get("/webhooks/", {"outcome": "bogus"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


@pytest.mark.parametrize("rows", [1, 20])
def test_the_page_costs_the_same_queries_for_any_number_of_rows(
    sre_client: Client, rows: int, django_assert_num_queries: Any
) -> None:
    make_history(rows)
    sre_client.get("/webhooks/")  # session and role lookups warmed the same way
    # session, user, groups, background jobs (the banner), page count, page rows
    # (with deploys), outcome counts
    with django_assert_num_queries(7):
        assert sre_client.get("/webhooks/").status_code == 200


def test_viewers_may_not_open_it_nor_see_it_in_the_navigation(
    viewer_client: Client, sre_client: Client
) -> None:
    assert viewer_client.get("/webhooks/").status_code == 403
    assert 'href="/webhooks/"' not in viewer_client.get("/deploys/").content.decode()
    assert 'href="/webhooks/"' in sre_client.get("/deploys/").content.decode()


def test_metric_counts_deliveries_by_outcome(client: Client) -> None:
    make_history(2)
    WebhookRedelivery.objects.create(guid="g", github_delivery_id=1, attempts=2)

    samples = scrape(client)

    by_outcome = {
        dict(labels)["outcome"]: value
        for labels, value in samples["controlplane_webhook_deliveries"].items()
    }
    assert by_outcome == {
        "pending": 0,
        "matched": 2,
        "unmatched": 0,
        "ignored": 2,
        "failed": 2,
    }
    assert samples["controlplane_webhook_redeliveries_requested"][()] == 2


def test_admins_browse_deliveries_in_the_admin(admin_client_: Client) -> None:
    make_history()
    for path in (
        "/admin/deploys/webhookdelivery/?outcome__exact=failed",
        "/admin/deploys/webhookredelivery/",
        "/admin/deploys/webhookhook/",
    ):
        assert admin_client_.get(path).status_code == 200
    page = admin_client_.get("/admin/deploys/webhookdelivery/?outcome__exact=failed")
    assert "KeyError" in page.content.decode()
