"""Approvals in the control plane on the API (``approve/``, ``reject/``, the
deploy's ``signoff`` and ``break_glass``) and on the pages (the deploy page's panel
and form, the approval page the notification links to)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from controlplane.models import AuditEvent
from deploys.models import DeployRun, Environment, SignOff
from deploys.triggers import request_deploy
from tests.conftest import logged_in, make_user
from tests.factories import make_env, pool_runner

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("github")]

DEPLOYS = "/api/v1/deploys/"


@pytest.fixture
def carol(db: None) -> User:
    return make_user("carol-sre", "sre")


def awaiting_run(requester: User, required: int = 2, **kw: Any) -> DeployRun:
    env = make_env(
        "production", pool_runner("prod-1"), signoffs_required=required, **kw
    )
    return request_deploy(requester, env, "main").run


def post(client: Client, url: str, body: Any) -> Any:
    return client.post(url, body, content_type="application/json")


def test_an_sre_approves_through_the_api_and_sees_who_is_still_awaited(
    sre: User, carol: User
) -> None:
    run = awaiting_run(sre)

    response = post(logged_in(carol), f"{DEPLOYS}{run.pk}/approve/", {"reason": "ok"})

    assert response.status_code == 202
    body = response.json()
    assert body["id"] == run.pk
    assert body["signoff"]["approvals_required"] == 2
    assert [a["by"] for a in body["signoff"]["approvals"]] == ["carol-sre"]
    assert body["signoff"]["approvals"][0]["reason"] == "ok"
    assert body["signoff"]["awaited_from"] == "any SRE but sam-sre"
    assert body["signoff"]["satisfied"] is False
    assert body["signoff"]["why"] == (
        "awaiting approvals in the control plane: 1 of 2 (carol-sre), from any SRE "
        "but sam-sre"
    )
    assert body["events"][-1]["kind"] == "signoff_approved"
    assert body["events"][-1]["message"] == (
        "carol-sre approved in the control plane (1 of 2): ok"
    )


@pytest.mark.parametrize(
    ("who", "status", "message"),
    [
        ("requester", 403, "another SRE must approve it (two-person rule)"),
        ("viewer", 403, "This needs the sre or admin role."),
        ("anonymous", 401, "Authentication credentials were not provided."),
    ],
)
def test_who_may_not_approve_is_told_why(
    sre: User, viewer: User, who: str, status: int, message: str
) -> None:
    run = awaiting_run(sre)
    client = {"requester": logged_in(sre), "viewer": logged_in(viewer)}.get(
        who, Client()
    )

    response = post(client, f"{DEPLOYS}{run.pk}/approve/", {})

    assert response.status_code == status
    assert message in response.json()["detail"]
    assert SignOff.objects.count() == 0


def test_reject_needs_a_reason_and_ends_the_deploy(sre: User, carol: User) -> None:
    run = awaiting_run(sre)
    client = logged_in(carol)

    bare = post(client, f"{DEPLOYS}{run.pk}/reject/", {"reason": ""})
    rejected = post(client, f"{DEPLOYS}{run.pk}/reject/", {"reason": "not today"})
    again = post(client, f"{DEPLOYS}{run.pk}/approve/", {})

    assert bare.status_code == 400
    assert bare.json() == {
        "reason": [
            "say why you reject the deploy: the reason is shown to the requester"
        ]
    }
    assert rejected.status_code == 202
    assert rejected.json()["state"] == "failed"
    assert rejected.json()["reason"] == "rejected"
    assert rejected.json()["runbook"] == "/runbooks/deploy-rejected/"
    assert rejected.json()["signoff"]["rejected_by"] == "carol-sre"
    assert again.status_code == 409
    assert again.json()["code"] == "finished"
    assert again.json()["detail"] == (
        f"deploy #{run.pk} already failed (an SRE rejected it in the control plane): "
        "nothing to approve or reject"
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"reason": "x" * 501}, "Ensure this field has no more than 500 characters."),
        ({"reason": 5}, "must be a JSON string"),
    ],
)
def test_a_bad_reason_is_a_400_naming_the_field(
    sre: User, carol: User, body: dict[str, Any], error: str
) -> None:
    run = awaiting_run(sre)

    response = post(logged_in(carol), f"{DEPLOYS}{run.pk}/approve/", body)

    assert response.status_code == 400
    assert response.json() == {"reason": [error]}


def test_an_environment_without_approvals_answers_409_and_a_null_signoff(
    sre: User, carol: User
) -> None:
    run = awaiting_run(sre, required=0)
    client = logged_in(carol)

    response = post(client, f"{DEPLOYS}{run.pk}/approve/", {})
    detail = client.get(f"{DEPLOYS}{run.pk}/").json()

    assert response.status_code == 409
    assert response.json() == {
        "detail": "production needs no approval in the control plane",
        "code": "not_required",
        "field": "",
    }
    assert detail["signoff"] is None
    assert detail["break_glass"] is False
    assert post(client, f"{DEPLOYS}999999/approve/", {}).status_code == 404


def test_break_glass_is_flagged_in_the_list_and_detail(
    admin_user: User, sre: User
) -> None:
    env = make_env("production", pool_runner("prod-1"), signoffs_required=1)
    glass = request_deploy(admin_user, env, "main", break_glass_reason="CVE").run
    plain = request_deploy(sre, env, "main").run
    client = logged_in(sre)

    listed = {r["id"]: r for r in client.get(DEPLOYS).json()["results"]}
    detail = client.get(f"{DEPLOYS}{glass.pk}/").json()
    refused = post(client, f"{DEPLOYS}{glass.pk}/approve/", {})

    assert listed[glass.pk]["break_glass"] is True
    assert listed[plain.pk]["break_glass"] is False
    assert detail["signoff"]["satisfied"] is True
    assert detail["signoff"]["break_glass"] == "ada-admin: CVE"
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "approvals were skipped by break-glass (ada-admin: CVE)"
    )


def test_only_admins_break_glass_on_an_awaiting_deploy_with_a_reason(
    admin_user: User, sre: User, carol: User
) -> None:
    run = awaiting_run(sre)
    url = f"{DEPLOYS}{run.pk}/break-glass/"
    admin = logged_in(admin_user)

    by_sre = post(logged_in(carol), url, {"reason": "urgent"})
    bare = post(admin, url, {})
    done = post(admin, url, {"reason": "outage fix"})
    again = post(admin, url, {"reason": "twice"})

    assert by_sre.status_code == 403
    assert bare.status_code == 400
    assert "say why you break glass" in bare.json()["reason"][0]
    assert done.status_code == 202
    assert done.json()["break_glass"] is True
    assert done.json()["signoff"]["break_glass"] == "ada-admin: outage fix"
    assert again.status_code == 409
    assert again.json()["code"] == "break_glass"


def test_an_admin_sees_break_glass_on_the_deploy_page(
    admin_user: User, sre: User
) -> None:
    run = awaiting_run(sre)
    client = logged_in(admin_user)

    page = client.get(f"/deploys/{run.pk}/").content.decode()
    response = client.post(
        f"/deploys/{run.pk}/signoff/",
        {"decision": "break_glass", "reason": "outage fix"},
        follow=True,
    )

    assert 'id="signoff-break-glass-button"' in page
    assert 'id="signoff-approve-button"' in page
    assert "approvals skipped by break-glass" in response.content.decode()
    assert 'id="run-break-glass"' in response.content.decode()


def test_a_non_admin_asking_to_break_glass_is_told_to_ask_an_sre(sre: User) -> None:
    make_env("production", pool_runner("prod-1"), signoffs_required=1)

    response = post(
        logged_in(sre),
        DEPLOYS,
        {"environment": "production", "break_glass_reason": "in a hurry"},
    )

    assert response.status_code == 403
    assert response.json()["field"] == "break_glass_reason"
    assert "ask another SRE to approve" in response.json()["detail"]
    assert DeployRun.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("signoffs_required", 11, "Ensure this value is less than or equal to 10."),
        ("signoffs_required", -1, "Ensure this value is greater than or equal to 0."),
        ("signoff_ttl", 10, "Ensure this value is greater than or equal to 60."),
    ],
)
def test_environment_approval_settings_are_validated(
    admin_user: User, field: str, value: int, error: str
) -> None:
    make_env("production")

    response = logged_in(admin_user).patch(
        "/api/v1/environments/production/",
        {field: value},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.json() == {field: [error]}


def test_admin_sets_the_approvals_an_environment_needs(admin_user: User) -> None:
    make_env("production")

    response = logged_in(admin_user).patch(
        "/api/v1/environments/production/",
        {"signoffs_required": 2, "signoff_ttl": 3600},
        content_type="application/json",
    )

    assert response.status_code == 200
    env = Environment.objects.get()
    assert (env.signoffs_required, env.signoff_ttl) == (2, 3600)


# Pages -------------------------------------------------------------------------------


def test_the_deploy_page_offers_approval_to_other_sres_only(
    sre: User, carol: User
) -> None:
    run = awaiting_run(sre)

    mine = logged_in(sre).get(f"/deploys/{run.pk}/").content.decode()
    theirs = logged_in(carol).get(f"/deploys/{run.pk}/").content.decode()

    assert 'id="run-signoff"' in mine
    assert "from any SRE but sam-sre" in mine
    assert "You requested this deploy: another SRE must approve it" in mine
    assert 'id="signoff-approve-button"' not in mine
    assert 'id="signoff-approve-button"' in theirs


def test_the_approval_page_approves_and_returns_to_the_deploy(
    sre: User, carol: User
) -> None:
    run = awaiting_run(sre, required=1)
    client = logged_in(carol)

    page = client.get(f"/deploys/{run.pk}/signoff/")
    response = client.post(
        f"/deploys/{run.pk}/signoff/", {"decision": "approve", "reason": "fine"}
    )

    assert page.status_code == 200
    assert 'id="signoff-approve-button"' in page.content.decode()
    assert response.status_code == 302
    assert response["Location"] == f"/deploys/{run.pk}/"
    assert SignOff.objects.get().approver_name == "carol-sre"
    assert AuditEvent.objects.filter(action="deploy.signoff_approve").count() == 1


def test_the_approval_page_says_why_a_decision_was_not_recorded(
    sre: User, carol: User
) -> None:
    run = awaiting_run(sre)
    client = logged_in(carol)

    response = client.post(
        f"/deploys/{run.pk}/signoff/", {"decision": "reject", "reason": ""}, follow=True
    )
    own = logged_in(sre).post(
        f"/deploys/{run.pk}/signoff/", {"decision": "approve"}, follow=True
    )

    assert "Not recorded: say why you reject the deploy" in response.content.decode()
    assert "Not recorded: you requested deploy" in own.content.decode()
    assert SignOff.objects.count() == 0


def test_break_glass_is_flagged_on_the_deploy_page_and_list(
    admin_user: User, sre: User
) -> None:
    env = make_env("production", pool_runner("prod-1"), signoffs_required=1)
    run = request_deploy(admin_user, env, "main", break_glass_reason="CVE").run
    client = logged_in(sre)

    page = client.get(f"/deploys/{run.pk}/").content.decode()
    listing = client.get("/deploys/").content.decode()

    assert 'id="run-break-glass"' in page
    assert "approvals in the control plane skipped by ada-admin: CVE" in page
    assert "data-break-glass" in listing
