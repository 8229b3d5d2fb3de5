"""The audit log: API (/api/v1/audit-events/), HTML page (/audit/), admin, and the API
conventions every endpoint shares (401/403 format, schema, docs)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from controlplane import audit
from controlplane.models import AuditEvent
from controlplane.permissions import IsSRE, IsViewer, ReadOnly
from controlplane.roles import role_of
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit-events/"


def token_client(user: User) -> Client:
    _, token = AuthToken.objects.create(user, timedelta(days=1))
    return Client(headers={"Authorization": f"Token {token}"})


def make_events(n: int, **kw: Any) -> list[AuditEvent]:
    now = timezone.now()
    return [
        AuditEvent.objects.create(
            created_at=now - timedelta(minutes=i),
            actor_name=kw.get("actor_name", "beat"),
            action=kw.get("action", "runner.sync"),
            outcome=kw.get("outcome", AuditEvent.Outcome.SUCCESS),
            target_type=kw.get("target_type", ""),
            target_id=kw.get("target_id", ""),
        )
        for i in range(n)
    ]


# API -----------------------------------------------------------------------------


def test_api_lists_events_newest_first_with_limit_offset(viewer: User) -> None:
    events = make_events(3)

    body = token_client(viewer).get(URL, {"limit": 2}).json()

    assert body["count"] == 3
    assert [e["id"] for e in body["results"]] == [events[0].pk, events[1].pk]
    assert body["next"] is not None
    assert set(body["results"][0]) == {
        "id",
        "created_at",
        "actor_name",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "outcome",
        "request_id",
        "detail",
    }


def test_api_filters_by_action_actor_target_outcome_and_time(
    viewer: User, sre: User
) -> None:
    make_events(2)
    old = make_events(1, action="deploy.request", actor_name="sam-sre")[0]
    old.created_at = timezone.now() - timedelta(days=2)
    old.save()
    hit = audit.record(
        sre, "runner.drain", sre, outcome=AuditEvent.Outcome.DENIED, reason="x"
    )
    client = token_client(viewer)

    def ids(**params: str) -> list[int]:
        response = client.get(URL, params)
        assert response.status_code == 200, response.content
        return [e["id"] for e in response.json()["results"]]

    assert ids(action="runner.drain") == [hit.pk]
    assert ids(actor="sam-sre") == [hit.pk, old.pk]
    assert ids(target_type="auth.user", target_id=str(sre.pk)) == [hit.pk]
    assert ids(outcome="denied") == [hit.pk]
    cutoff = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(created_before=cutoff) == [old.pk]
    assert old.pk not in ids(created_after=cutoff)
    assert ids(ordering="created_at")[0] == old.pk


def test_api_rejects_a_bad_filter_value_in_drf_format(viewer: User) -> None:
    response = token_client(viewer).get(URL, {"outcome": "maybe"})

    assert response.status_code == 400
    assert "outcome" in response.json()


def test_time_filters_take_any_iso_offset_and_compare_in_utc(viewer: User) -> None:
    event = make_events(1)[0]
    # 23:05 west of UTC is valid ISO 8601 but beyond what PostgreSQL accepts.
    just_before = (event.created_at - timedelta(minutes=1)).astimezone(
        timezone.get_fixed_timezone(-(23 * 60 + 5))
    )

    response = token_client(viewer).get(URL, {"created_after": just_before.isoformat()})

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [event.pk]
    too_early = token_client(viewer).get(
        URL, {"created_after": "0001-01-01T00:30:00+05:00"}
    )
    assert too_early.status_code == 400
    assert "created_after" in too_early.json()


def test_api_is_read_only_even_for_admins(admin_user: User) -> None:
    event = make_events(1)[0]
    client = token_client(admin_user)

    assert client.post(URL, {}).status_code == 405
    assert client.delete(f"{URL}{event.pk}/").status_code == 405
    assert client.get(f"{URL}{event.pk}/").json()["id"] == event.pk
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.parametrize("rows", [5, 40])
def test_api_list_query_count_does_not_grow_with_rows(
    viewer: User, rows: int, django_assert_num_queries: Any
) -> None:
    make_events(rows)
    client = token_client(viewer)
    # token lookup, other tokens' cleanup, role groups, count, page
    with django_assert_num_queries(5):
        assert client.get(URL).status_code == 200


def test_anonymous_api_call_gets_401_with_token_challenge() -> None:
    response = Client().get(URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {
        "detail": "Authentication credentials were not provided."
    }


def test_bad_token_gets_401() -> None:
    response = Client(headers={"Authorization": "Token nope"}).get(URL)

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_role_denial_names_the_role_needed(outsider: User) -> None:
    response = token_client(outsider).get(URL)

    assert response.status_code == 403
    assert response.json() == {"detail": "This needs the viewer, sre or admin role."}


def test_session_auth_works_for_the_browser(viewer: User) -> None:
    assert logged_in(viewer).get(URL).status_code == 200


def test_whoami_reports_role_and_auth(outsider: User, viewer: User) -> None:
    body = token_client(outsider).get("/api/v1/auth/whoami").json()
    assert body["role"] == "none"
    assert body["auth"] == "token"

    body = logged_in(viewer).get("/api/v1/auth/whoami").json()
    assert body == {
        "username": "val-viewer",
        "role": "viewer",
        "auth": "session",
        "token_expiry": None,
    }


def test_schema_lists_the_audit_api_and_docs_work_offline(viewer: User) -> None:
    client = logged_in(viewer)
    schema = client.get("/api/schema/", {"format": "json"}).json()
    assert "/api/v1/audit-events/" in schema["paths"]
    assert "/api/v1/auth/whoami" in schema["paths"]

    docs = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in docs
    assert "cdn" not in docs.lower()


def test_docs_send_anonymous_people_to_login() -> None:
    response = Client().get("/api/docs/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# HTML page -----------------------------------------------------------------------


def test_audit_page_filters_and_paginates_newest_first(viewer: User) -> None:
    events = make_events(60)
    make_events(2, action="session.login", actor_name="ada-admin")
    client = logged_in(viewer)

    page1 = client.get("/audit/", {"action": "runner.sync"})
    page2 = client.get("/audit/", {"action": "runner.sync", "page": "2"})

    assert [e.pk for e in page1.context["events"]] == [e.pk for e in events[:50]]
    assert [e.pk for e in page2.context["events"]] == [e.pk for e in events[50:]]
    html = page1.content.decode()
    assert "Page 1 of 2" in html
    assert "?action=runner.sync&amp;page=2" in html
    assert "ada-admin" not in html


@pytest.mark.parametrize("rows", [3, 30])
def test_audit_page_query_count_does_not_grow_with_rows(
    viewer: User, rows: int, django_assert_num_queries: Any
) -> None:
    make_events(rows)
    client = logged_in(viewer)
    client.get("/audit/")  # the first request stamps the session
    # session, user, role groups, count, page, the stopped-jobs banner
    with django_assert_num_queries(6):
        assert client.get("/audit/").status_code == 200


# Admin ---------------------------------------------------------------------------


def test_admin_role_sees_audit_events_read_only(admin_user: User) -> None:
    event = make_events(1, action="runner.drain")[0]
    client = logged_in(admin_user)

    assert b"runner.drain" in client.get("/admin/controlplane/auditevent/").content
    assert client.get("/admin/controlplane/auditevent/add/").status_code == 403
    response = client.post(
        f"/admin/controlplane/auditevent/{event.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_admin_site_is_for_the_admin_role_only(sre: User) -> None:
    response = logged_in(sre).get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    login = logged_in(sre).get(response["Location"])
    assert login["Location"].startswith("/accounts/login/?next=/admin/")


def test_admin_login_sends_anonymous_people_to_the_audited_login() -> None:
    response = Client().get("/admin/login/", {"next": "https://evil.example/"})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/admin/"


class _ComposedPermissionView(APIView):
    permission_classes = [IsViewer & ReadOnly | IsSRE]

    def get(self, request: Request) -> Response:
        return Response({})

    def post(self, request: Request) -> Response:
        return Response({})


@pytest.mark.parametrize(
    ("persona", "method", "status", "detail"),
    [
        ("viewer", "get", 200, None),
        ("viewer", "post", 403, "This needs the sre or admin role."),
        ("outsider", "get", 403, "This needs the viewer, sre or admin role."),
        ("sre", "post", 200, None),
    ],
)
def test_composed_permission_denial_names_the_lowest_role_that_would_pass(
    persona: str,
    method: str,
    status: int,
    detail: str | None,
    request: pytest.FixtureRequest,
) -> None:
    user = request.getfixturevalue(persona)
    api_request = getattr(APIRequestFactory(), method)("/x")
    force_authenticate(api_request, user=user)

    response = _ComposedPermissionView.as_view()(api_request)

    assert response.status_code == status
    if detail is not None:
        assert response.data == {"detail": detail}
    # The role tried during the check does not stick to the user.
    assert role_of(user).label == ("none" if persona == "outsider" else persona)
