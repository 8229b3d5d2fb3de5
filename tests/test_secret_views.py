"""The secrets pages: sorted by urgency, the due timeline, detail with history, the
rotate form for admins only (refusals shown, nothing recorded), the audit button and
the import of schedules for secrets GitHub has."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deploys.models import Environment
from githubsim import Simulator, repository_scope
from githubsim.errors import invalid
from githubsim.secretstore import SecretStore
from rotations.models import SecretRotation, SecretRotationSchedule
from tests.conftest import logged_in
from tests.factories import make_schedule

REPO = "acme/deploy"

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(time_scale=60, seed=5, demo=True, connect=True, max_retries=0),
]


def aged_schedule(
    name: str, days_ago: float | None, **kw: Any
) -> SecretRotationSchedule:
    """A schedule checked now, last rotated ``days_ago`` (never when None)."""
    now = timezone.now()
    return make_schedule(
        name,
        last_rotated_at=None if days_ago is None else now - timedelta(days=days_ago),
        last_checked_at=now,
        present=kw.pop("present", True),
        **kw,
    )


def test_list_is_sorted_overdue_then_missing_then_due_soon(viewer: User) -> None:
    aged_schedule("FRESH", 1)
    aged_schedule("DUE_SOON", 80)
    aged_schedule("GONE", 10, present=False)
    aged_schedule("OLD", 120)

    response = logged_in(viewer).get("/secrets/")

    assert response.status_code == 200
    html = response.content.decode()
    rows = re.findall(r'<tr data-status="(\w+)">', html)
    assert rows == ["overdue", "missing", "due_soon", "ok"]
    table = html.split('id="secrets"')[1]
    order = [table.index(name) for name in ("OLD", "GONE", "DUE_SOON", "FRESH")]
    assert order == sorted(order)


def test_overdue_and_missing_link_their_runbooks_on_list_and_detail(
    viewer: User,
) -> None:
    old = aged_schedule("OLD", 120)
    aged_schedule("GONE", 10, present=False)
    aged_schedule("FRESH", 1)
    client = logged_in(viewer)

    html = client.get("/secrets/").content.decode()
    detail = client.get(f"/secrets/{old.pk}/").content.decode()

    assert html.count('href="/runbooks/secret-overdue/"') == 1
    assert html.count('href="/runbooks/secret-missing/"') == 1
    assert 'href="/runbooks/secret-overdue/"' in detail
    assert client.get("/runbooks/secret-overdue/").status_code == 200


def test_timeline_shows_what_falls_due_within_180_days(viewer: User) -> None:
    aged_schedule("SOON", 80)  # due in 10 days
    aged_schedule("LATER", 0, interval_days=365)  # due in a year

    response = logged_in(viewer).get("/secrets/")

    html = response.content.decode()
    timeline = html.split('id="timeline"')[1].split("</table>")[0]
    chart = html.split('id="due-chart"')[1].split("</svg>")[0]
    assert "SOON" in timeline and 'data-secret="SOON"' in chart
    assert "LATER" not in timeline and "LATER" not in chart


def test_secrets_due_the_same_day_stack_and_overdue_ones_have_a_lane(
    viewer: User,
) -> None:
    for name in ("ALPHA_KEY", "BRAVO_KEY", "CHARLIE_KEY"):
        aged_schedule(name, 80)  # all due in 10 days
    aged_schedule("OLD_KEY", 120)  # overdue by 30 days

    response = logged_in(viewer).get("/secrets/")

    chart = response.context["chart"]
    same_day = [m for m in chart.marks if not m.overdue]
    assert len({m.x for m in same_day}) == 1
    assert len({m.y for m in same_day}) == 3  # stacked, one row each
    (old,) = [m for m in chart.marks if m.overdue]
    # Inside the chart, in the overdue lane left of the axis.
    assert 0 <= old.x < chart.axis_left
    assert old.y < chart.height
    html = response.content.decode()
    assert "<title>OLD_KEY (repository acme/deploy): due" in html
    assert "overdue by 30 d" in html


def test_list_query_count_does_not_grow_with_schedules(viewer: User) -> None:
    env = Environment.objects.create(name="production", repository=REPO)
    client = logged_in(viewer)
    client.get("/secrets/")  # the session and role lookups of a first request
    for i in range(3):
        aged_schedule(f"S{i}", 10).required_by.add(env)
    with CaptureQueriesContext(connection) as small:
        client.get("/secrets/")
    for i in range(3, 30):
        aged_schedule(f"S{i}", 10).required_by.add(env)
    with CaptureQueriesContext(connection) as large:
        client.get("/secrets/")

    # The session, the user, the role, the schedules, their required-by environments,
    # the stopped-jobs banner.
    assert len(small) == len(large) == 6


def test_viewer_sees_no_rotate_form_and_cannot_post_one(
    sim: Simulator, viewer: User, sre: User
) -> None:
    schedule = aged_schedule("DEPLOY_KEY", 10)

    page = logged_in(viewer).get(f"/secrets/{schedule.pk}/")
    assert page.status_code == 200
    assert b"Rotate in GitHub" not in page.content
    for user in (viewer, sre):
        response = logged_in(user).post(
            f"/secrets/{schedule.pk}/rotate/", {"value": "nope"}
        )
        assert response.status_code == 403
    assert not SecretRotation.objects.exists()
    assert sim.state.decrypt_secret(repository_scope(REPO), "DEPLOY_KEY") == (
        "demo-deploy-key"
    )


def test_admin_rotates_from_the_form_and_sees_it_in_the_history(
    sim: Simulator, admin_user: User
) -> None:
    schedule = aged_schedule("DEPLOY_KEY", 100)
    client = logged_in(admin_user)

    response = client.post(
        f"/secrets/{schedule.pk}/rotate/", {"value": "from-the-form"}, follow=True
    )

    assert response.status_code == 200
    assert sim.state.decrypt_secret(repository_scope(REPO), "DEPLOY_KEY") == (
        "from-the-form"
    )
    html = response.content.decode()
    assert "rotated here" in html
    assert "from-the-form" not in html
    schedule.refresh_from_db()
    assert schedule.status_at(timezone.now()) == "ok"


def test_admin_generates_a_value_from_the_form(
    sim: Simulator, admin_user: User
) -> None:
    schedule = aged_schedule("DEPLOY_KEY", 100)

    response = logged_in(admin_user).post(
        f"/secrets/{schedule.pk}/rotate/", {"generate": "on"}
    )

    assert response.status_code == 302
    generated = sim.state.decrypt_secret(repository_scope(REPO), "DEPLOY_KEY")
    assert generated != "demo-deploy-key"
    assert len(generated) >= 43


def test_form_without_value_or_generate_is_refused(
    sim: Simulator, admin_user: User
) -> None:
    schedule = aged_schedule("DEPLOY_KEY", 100)

    response = logged_in(admin_user).post(f"/secrets/{schedule.pk}/rotate/", {})

    assert response.status_code == 400
    assert b"Type a value or choose to generate one." in response.content


def test_refused_rotation_is_shown_and_nothing_recorded(
    sim: Simulator, admin_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = aged_schedule("DEPLOY_KEY", 100)

    def refuse(self: SecretStore, *args: Any, **kwargs: Any) -> bool:
        raise invalid("Bad request: key_id does not match", "key_id")

    monkeypatch.setattr(SecretStore, "put_sealed", refuse)

    response = logged_in(admin_user).post(
        f"/secrets/{schedule.pk}/rotate/", {"value": "refused-in-form"}
    )

    assert response.status_code == 502
    html = response.content.decode()
    assert 'id="rotate-error"' in html
    assert "Nothing was recorded as rotated." in html
    assert "refused-in-form" not in html
    assert not SecretRotation.objects.exists()


def test_sre_runs_the_audit_from_the_list(sim: Simulator, sre: User) -> None:
    schedule = aged_schedule("NOT_IN_GITHUB", 10)

    response = logged_in(sre).post("/secrets/audit/", follow=True)

    assert response.status_code == 200
    assert b"missing: NOT_IN_GITHUB" in response.content
    schedule.refresh_from_db()
    assert schedule.present is False


def test_admin_imports_the_secrets_github_has(sim: Simulator, admin_user: User) -> None:
    Environment.objects.create(name="production", repository=REPO)
    aged_schedule("DEPLOY_KEY", 10)
    client = logged_in(admin_user)

    page = client.get("/secrets/import/")

    keys = re.findall(r'name="key" value="([^"]+)"', page.content.decode())
    assert keys == [
        "repository::REGISTRY_TOKEN",
        "environment:production:PROD_DB_PASSWORD",
    ]
    response = client.post("/secrets/import/", {"key": keys[:1]})
    assert response.status_code == 302
    imported = SecretRotationSchedule.objects.get(name="REGISTRY_TOKEN")
    # The demo's registry token was last changed 120 days ago: overdue at once.
    assert imported.status_at(timezone.now()) == "overdue"
    assert not SecretRotationSchedule.objects.filter(name="PROD_DB_PASSWORD").exists()


def test_badges_name_each_status_in_words_not_its_value(viewer: User) -> None:
    soon = aged_schedule("DUE_SOON_KEY", 80)
    never = make_schedule("NEVER_CHECKED")
    client = logged_in(viewer)

    pages = {
        "list": client.get("/secrets/").content.decode(),
        "detail": client.get(f"/secrets/{soon.pk}/").content.decode(),
        "unchecked": client.get(f"/secrets/{never.pk}/").content.decode(),
    }

    badges = {
        page: re.findall(r'<span class="badge badge-[\w-]+">([^<]*)</span>', html)
        for page, html in pages.items()
    }
    # The due timeline's row and the table's row for the same schedule.
    assert badges["list"].count("due soon") == 2 + 1  # and the count above
    assert "unknown (never checked)" in badges["list"]
    assert "due soon" in badges["detail"]
    assert "unknown (never checked)" in badges["unchecked"]
    for page, words in badges.items():
        assert "due_soon" not in words and "unknown" not in words, page
    # The value stays where scripts and styles read it.
    assert '<tr data-status="due_soon">' in pages["list"]
    assert 'class="badge badge-due_soon"' in pages["detail"]
