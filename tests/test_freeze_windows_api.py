"""``/api/v1/freeze-windows/``: SREs read, admins write (audited); every shape the
database would refuse, or let through half-empty, is a 400 naming the field; each
window says whether it is in force, the environment when its freeze ends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.test import Client

from controlplane.models import AuditEvent
from deploys.models import Environment, FreezeWindow
from tests.conftest import logged_in
from tests.factories import make_env

WINDOWS = "/api/v1/freeze-windows/"
# A Wednesday.
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def admin_client(admin_user: User) -> Client:
    return logged_in(admin_user)


def one_off(
    env: Environment, start: timedelta, end: timedelta, **kw: Any
) -> FreezeWindow:
    return FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason=kw.pop("reason", "release freeze"),
        starts_at=NOW + start,
        ends_at=NOW + end,
        **kw,
    )


def weekly(
    env: Environment, weekday: int, at: time, minutes: int, reason: str = "weekend"
) -> FreezeWindow:
    return FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.WEEKLY,
        reason=reason,
        weekday=weekday,
        start_time=at,
        duration_minutes=minutes,
    )


def one_off_body(**kw: Any) -> dict[str, Any]:
    """A valid body with ``kw`` changed; a field given as ``...`` is left out."""
    body: dict[str, Any] = {
        "environment": "production",
        "kind": "one_off",
        "reason": "year-end freeze",
        "starts_at": "2026-12-20T00:00:00Z",
        "ends_at": "2027-01-04T00:00:00Z",
    }
    body.update(kw)
    return {k: v for k, v in body.items() if v is not ...}


def weekly_body(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "environment": "production",
        "kind": "weekly",
        "reason": "weekend",
        "weekday": 4,
        "start_time": "22:00",
        "duration_minutes": 56 * 60,
    }
    body.update(kw)
    return {k: v for k, v in body.items() if v is not ...}


def audit_rows(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


# Roles ---------------------------------------------------------------------------------


def test_viewers_are_refused_sres_read_and_admins_write(
    viewer_client: Client, sre_client: Client, admin_client: Client
) -> None:
    window = one_off(make_env(), timedelta(days=1), timedelta(days=2))
    detail = f"{WINDOWS}{window.pk}/"

    assert viewer_client.get(WINDOWS).status_code == 403
    assert viewer_client.get(detail).status_code == 403
    assert sre_client.get(WINDOWS).status_code == 200
    assert sre_client.get(detail).status_code == 200
    refused = [
        sre_client.post(WINDOWS, one_off_body(), content_type="application/json"),
        sre_client.patch(detail, {"reason": "x"}, content_type="application/json"),
        sre_client.put(detail, one_off_body(), content_type="application/json"),
        sre_client.delete(detail),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    assert "admin" in refused[0].json()["detail"]
    window.refresh_from_db()
    assert window.reason == "release freeze"
    assert FreezeWindow.objects.count() == 1
    assert not AuditEvent.objects.filter(action__startswith="freeze_window.").exists()
    assert (
        admin_client.post(
            WINDOWS, one_off_body(), content_type="application/json"
        ).status_code
        == 201
    )


# Create, change, delete: audited --------------------------------------------------------


def test_admin_creates_a_one_off_window_audited(admin_client: Client) -> None:
    make_env()

    response = admin_client.post(
        WINDOWS, one_off_body(), content_type="application/json"
    )

    assert response.status_code == 201
    data = response.json()
    window = FreezeWindow.objects.get()
    assert data == {
        "id": window.pk,
        "environment": "production",
        "kind": "one_off",
        "reason": "year-end freeze",
        "starts_at": "2026-12-20T00:00:00Z",
        "ends_at": "2027-01-04T00:00:00Z",
        "weekday": None,
        "start_time": None,
        "duration_minutes": None,
        "in_force": False,
    }
    [row] = audit_rows("freeze_window.create")
    assert row.actor_name == "ada-admin"
    assert row.target_id == str(window.pk)
    assert row.detail == {
        "environment": "production",
        "reason": "year-end freeze",
        "schedule": "one-off, 2026-12-20 00:00 – 2027-01-04 00:00 UTC",
    }


def test_admin_creates_a_weekly_window_across_the_weeks_end(
    admin_client: Client,
) -> None:
    make_env()

    response = admin_client.post(
        WINDOWS, weekly_body(), content_type="application/json"
    )

    assert response.status_code == 201
    assert response.json()["start_time"] == "22:00:00"
    window = FreezeWindow.objects.get()
    assert (window.weekday, window.start_time, window.duration_minutes) == (
        4,
        time(22, 0),
        3360,
    )
    assert window.starts_at is None and window.ends_at is None
    [row] = audit_rows("freeze_window.create")
    assert row.detail["schedule"] == "weekly, Fridays from 22:00 UTC for 56 h"


def test_a_change_is_audited_with_the_fields_it_changed(admin_client: Client) -> None:
    window = one_off(make_env(), timedelta(days=1), timedelta(days=2))

    response = admin_client.patch(
        f"{WINDOWS}{window.pk}/",
        {"reason": "incident review", "ends_at": "2026-12-05T12:00:00Z"},
        content_type="application/json",
    )

    assert response.status_code == 200
    window.refresh_from_db()
    assert window.reason == "incident review"
    assert window.ends_at == datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    [row] = audit_rows("freeze_window.update")
    assert row.detail["fields"] == ["reason", "ends_at"]
    assert row.detail["reason"] == "incident review"


def test_changing_the_kind_clears_the_other_kinds_fields(admin_client: Client) -> None:
    window = weekly(make_env(), 4, time(22, 0), 60)

    response = admin_client.patch(
        f"{WINDOWS}{window.pk}/",
        {
            "kind": "one_off",
            "starts_at": "2026-12-20T00:00:00Z",
            "ends_at": "2026-12-21T00:00:00Z",
        },
        content_type="application/json",
    )

    assert response.status_code == 200, response.json()
    window.refresh_from_db()
    assert window.kind == FreezeWindow.Kind.ONE_OFF
    assert (window.weekday, window.start_time, window.duration_minutes) == (
        None,
        None,
        None,
    )
    [row] = audit_rows("freeze_window.update")
    assert row.detail["fields"] == [
        "kind",
        "starts_at",
        "ends_at",
        "weekday",
        "start_time",
        "duration_minutes",
    ]


def test_a_window_can_move_to_another_environment(admin_client: Client) -> None:
    window = one_off(make_env(), timedelta(days=1), timedelta(days=2))
    make_env("staging")

    response = admin_client.put(
        f"{WINDOWS}{window.pk}/",
        one_off_body(environment="staging"),
        content_type="application/json",
    )

    assert response.status_code == 200
    window.refresh_from_db()
    assert window.environment.name == "staging"
    [row] = audit_rows("freeze_window.update")
    assert row.detail["fields"] == [
        "environment",
        "reason",
        "starts_at",
        "ends_at",
    ]


def test_delete_is_audited(admin_client: Client) -> None:
    window = one_off(make_env(), timedelta(days=1), timedelta(days=2))
    pk = window.pk

    response = admin_client.delete(f"{WINDOWS}{pk}/")

    assert response.status_code == 204
    assert not FreezeWindow.objects.exists()
    [row] = audit_rows("freeze_window.delete")
    assert row.target_id == str(pk)
    assert row.detail["reason"] == "release freeze"


# Shapes the database refuses: 400 naming the field, nothing written --------------------


INVALID = [
    (one_off_body(starts_at=...), "starts_at"),
    (one_off_body(starts_at=None), "starts_at"),
    (one_off_body(ends_at=...), "ends_at"),
    (one_off_body(ends_at="2026-12-20T00:00:00Z"), "ends_at"),
    (one_off_body(ends_at="2026-12-19T23:59:00Z"), "ends_at"),
    (one_off_body(starts_at="not a time"), "starts_at"),
    (one_off_body(weekday=4), "weekday"),
    (one_off_body(start_time="22:00"), "start_time"),
    (one_off_body(duration_minutes=60), "duration_minutes"),
    (weekly_body(weekday=...), "weekday"),
    (weekly_body(weekday=None), "weekday"),
    (weekly_body(weekday=7), "weekday"),
    (weekly_body(weekday=-1), "weekday"),
    (weekly_body(start_time=...), "start_time"),
    (weekly_body(start_time="25:00"), "start_time"),
    (weekly_body(duration_minutes=...), "duration_minutes"),
    (weekly_body(duration_minutes=0), "duration_minutes"),
    (weekly_body(duration_minutes=7 * 24 * 60 + 1), "duration_minutes"),
    (weekly_body(starts_at="2026-12-20T00:00:00Z"), "starts_at"),
    (weekly_body(ends_at="2026-12-21T00:00:00Z"), "ends_at"),
    (one_off_body(kind=...), "kind"),
    (one_off_body(kind="monthly"), "kind"),
    (one_off_body(reason=...), "reason"),
    (one_off_body(reason="  "), "reason"),
    (one_off_body(reason="x" * 201), "reason"),
    (one_off_body(environment="nowhere"), "environment"),
    # PostgreSQL refuses a NUL in a query: an unknown name, not a 500.
    (one_off_body(environment="production\x00"), "environment"),
    (one_off_body(environment=...), "environment"),
]


@pytest.mark.parametrize(("body", "field"), INVALID)
def test_invalid_shapes_are_refused_naming_the_field(
    admin_client: Client, body: dict[str, Any], field: str
) -> None:
    make_env()

    response = admin_client.post(WINDOWS, body, content_type="application/json")

    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not FreezeWindow.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="freeze_window.").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ends_at": "2026-12-03T00:00:00Z"}, "ends_at"),  # before starts_at
        ({"kind": "weekly", "weekday": 4}, "start_time"),
        ({"weekday": 2}, "weekday"),
        ({"starts_at": None}, "starts_at"),
    ],
)
def test_an_invalid_change_leaves_the_window_as_it_was(
    admin_client: Client, change: dict[str, Any], field: str
) -> None:
    window = one_off(make_env(), timedelta(days=1), timedelta(days=2))

    response = admin_client.patch(
        f"{WINDOWS}{window.pk}/", change, content_type="application/json"
    )

    assert response.status_code == 400
    assert field in response.json(), response.json()
    window.refresh_from_db()
    assert window.kind == FreezeWindow.Kind.ONE_OFF
    assert window.starts_at == NOW + timedelta(days=1)
    assert window.ends_at == NOW + timedelta(days=2)
    assert not AuditEvent.objects.filter(action__startswith="freeze_window.").exists()


def test_the_model_names_the_fields_a_half_empty_window_lacks() -> None:
    """The admin site's form shows these; the database refuses them too (below)."""
    env = make_env()
    no_weekday = FreezeWindow(
        environment=env,
        kind=FreezeWindow.Kind.WEEKLY,
        reason="x",
        start_time=time(1),
        duration_minutes=5,
    )
    no_end = FreezeWindow(
        environment=env, kind=FreezeWindow.Kind.ONE_OFF, reason="x", starts_at=NOW
    )

    assert no_weekday.shape_errors() == {"weekday": "required when kind is weekly"}
    assert no_end.shape_errors() == {"ends_at": "required when kind is one_off"}


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "weekly", "start_time": time(1), "duration_minutes": 5},
        {"kind": "one_off", "starts_at": NOW},
    ],
    ids=["weekly-without-weekday", "one-off-without-end"],
)
def test_the_database_refuses_a_half_empty_window(fields: dict[str, Any]) -> None:
    """Rows written past the API and the admin (a shell, a script) cannot make the
    freeze check crash later: NULLs do not slip through the check constraint."""
    env = make_env()

    with pytest.raises(IntegrityError), transaction.atomic():
        FreezeWindow.objects.create(environment=env, reason="x", **fields)

    assert not FreezeWindow.objects.exists()


# Reading: filter, in force, frozen until -------------------------------------------------


def test_list_filters_by_environment_name(sre_client: Client) -> None:
    prod, staging = make_env(), make_env("staging")
    ours = one_off(prod, timedelta(days=1), timedelta(days=2))
    weekly(prod, 4, time(22), 60)
    theirs = one_off(staging, timedelta(days=1), timedelta(days=2))

    everything = sre_client.get(WINDOWS).json()
    prod_only = sre_client.get(WINDOWS, {"environment": "production"}).json()
    staging_one_off = sre_client.get(
        WINDOWS, {"environment": "staging", "kind": "one_off"}
    ).json()
    nowhere = sre_client.get(WINDOWS, {"environment": "nowhere"}).json()

    assert everything["count"] == 3
    assert prod_only["count"] == 2
    assert {w["environment"] for w in prod_only["results"]} == {"production"}
    assert ours.pk in {w["id"] for w in prod_only["results"]}
    assert [w["id"] for w in staging_one_off["results"]] == [theirs.pk]
    assert nowhere["count"] == 0


def test_windows_say_whether_they_are_in_force_and_the_environment_until_when(
    sre_client: Client,
) -> None:
    env = make_env()
    now_on = one_off(env, -timedelta(hours=1), timedelta(hours=1), reason="incident")
    # Overlaps the first: the freeze goes on until this one ends.
    follows = one_off(env, timedelta(minutes=30), timedelta(hours=3))
    later = one_off(env, timedelta(days=3), timedelta(days=4))

    windows = sre_client.get(WINDOWS).json()["results"]
    environment = sre_client.get("/api/v1/environments/production/").json()

    in_force = {w["id"]: w["in_force"] for w in windows}
    assert in_force == {now_on.pk: True, follows.pk: False, later.pk: False}
    assert environment["frozen"] == "incident"
    assert environment["frozen_until"] == "2026-12-02T15:00:00Z"
    assert {w["id"]: w["in_force"] for w in environment["freeze_windows"]} == in_force


def test_an_open_environment_has_no_freeze_end(sre_client: Client) -> None:
    one_off(make_env(), timedelta(days=1), timedelta(days=2))

    environment = sre_client.get("/api/v1/environments/production/").json()

    assert environment["frozen"] is None
    assert environment["frozen_until"] is None


def test_frozen_until_follows_weekly_windows_across_the_week_end() -> None:
    env = make_env()
    # Friday 22:00 for 56 h (to Monday 06:00), then Monday 06:00 for 2 h.
    weekly(env, 4, time(22, 0), 56 * 60)
    weekly(env, 0, time(6, 0), 120)
    saturday = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)

    assert env.frozen_until(saturday) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert env.frozen_until(NOW) is None


def test_frozen_until_stops_a_year_ahead_when_the_freeze_never_ends() -> None:
    env = make_env()
    # Two windows that between them cover every minute of the week.
    weekly(env, 0, time(0, 0), 4 * 24 * 60)
    weekly(env, 4, time(0, 0), 3 * 24 * 60)

    until = env.frozen_until(NOW)

    assert until is not None
    assert NOW + timedelta(days=366) <= until <= NOW + timedelta(days=373)


def test_list_query_count_does_not_grow_with_windows(
    sre_client: Client, django_assert_num_queries: Any
) -> None:
    sre_client.get(WINDOWS)
    envs = [make_env(f"env-{i}") for i in range(3)]
    for env in envs[:1]:
        one_off(env, timedelta(days=1), timedelta(days=2))
    # session, user, role groups, count, windows with their environments.
    with django_assert_num_queries(5):
        small = sre_client.get(WINDOWS)
    for env in envs:
        for _ in range(5):
            one_off(env, -timedelta(hours=1), timedelta(hours=1))
            weekly(env, 2, time(11, 0), 120)
    with django_assert_num_queries(5):
        large = sre_client.get(WINDOWS)

    assert small.json()["count"] == 1
    assert large.json()["count"] == 31


# The admin site's inline -----------------------------------------------------------------


def admin_form(env: Environment, *windows: dict[str, str]) -> dict[str, str]:
    """The environment's change form as the admin site posts it, with ``windows``
    as the freeze window inline's rows."""
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
        "canary_policy": env.canary_policy,
        "canary_interval_minutes": str(env.canary_interval_minutes),
        "github_environment": env.github_environment,
        "heartbeat_policy": env.heartbeat_policy,
        "exporter_policy": env.exporter_policy,
        "max_attempts": str(env.max_attempts),
        "required_secrets": "",  # one name per line
        "policy": env.policy,
        "pool_entries-TOTAL_FORMS": "0",
        "pool_entries-INITIAL_FORMS": "0",
        "freeze_windows-TOTAL_FORMS": str(len(windows)),
        "freeze_windows-INITIAL_FORMS": str(sum("id" in w for w in windows)),
    }
    for i, window in enumerate(windows):
        data.update({f"freeze_windows-{i}-{k}": v for k, v in window.items()})
        data[f"freeze_windows-{i}-environment"] = str(env.pk)
    return data


def test_the_admin_sites_inline_is_audited_and_refuses_half_empty_windows(
    admin_client: Client,
) -> None:
    env = make_env()
    gone = one_off(env, timedelta(days=1), timedelta(days=2), reason="old")
    url = f"/admin/deploys/environment/{env.pk}/change/"
    half_empty = {"kind": "weekly", "reason": "weekend", "start_time": "22:00"}
    weekend = {**half_empty, "weekday": "4", "duration_minutes": "60"}
    delete = {"id": str(gone.pk), "kind": "one_off", "reason": "old", "DELETE": "on"}
    delete |= {
        "starts_at_0": "2026-12-03",
        "starts_at_1": "12:00:00",
        "ends_at_0": "2026-12-04",
        "ends_at_1": "12:00:00",
    }

    refused = admin_client.post(url, admin_form(env, half_empty))
    saved = admin_client.post(url, admin_form(env, delete, weekend))

    assert refused.status_code == 200  # the form again, with its errors
    assert "required when kind is weekly" in refused.content.decode()
    assert saved.status_code == 302
    [window] = FreezeWindow.objects.all()
    assert window.reason == "weekend"
    assert [
        (row.action, row.detail["reason"])
        for row in AuditEvent.objects.filter(
            action__startswith="freeze_window."
        ).order_by("pk")
    ] == [
        ("freeze_window.delete", "old"),
        ("freeze_window.create", "weekend"),
    ]
