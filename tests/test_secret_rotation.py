"""Rotating a secret: sealed with a fresh key and PUT to the simulator, recorded as
a rotation (who, when, key id), audited; refused or failed rotations record nothing
as rotated; only admins may rotate."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.models import AuditEvent
from deploys.models import Environment
from githubsim import Simulator, environment_scope, repository_scope
from githubsim.errors import ApiError, invalid
from githubsim.secretstore import SecretStore
from rotations import domain
from rotations.models import SecretRotation
from tests.conftest import logged_in
from tests.factories import make_schedule

REPO = "acme/deploy"

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(time_scale=60, seed=5, demo=True, connect=True, max_retries=0),
]


def refuse_puts(monkeypatch: pytest.MonkeyPatch, error: ApiError) -> None:
    """The simulator answers every secret PUT with ``error`` (after the public key
    was fetched), as GitHub does when it refuses or fails mid-rotation."""

    def put_sealed(self: SecretStore, *args: Any, **kwargs: Any) -> bool:
        raise error

    monkeypatch.setattr(SecretStore, "put_sealed", put_sealed)


def test_sealed_value_decrypts_in_the_simulator_to_the_original(
    sim: Simulator, admin_user: User
) -> None:
    schedule = make_schedule()
    key_id = sim.state.secret_store(repository_scope(REPO)).key_id

    rotation = domain.rotate(schedule, "new-deploy-key-ü", admin_user)

    assert sim.state.decrypt_secret(repository_scope(REPO), "DEPLOY_KEY") == (
        "new-deploy-key-ü"
    )
    assert rotation.key_id == key_id
    assert rotation.actor == admin_user
    assert rotation.source == SecretRotation.Source.CONTROL_PLANE
    schedule.refresh_from_db()
    assert schedule.last_rotated_at == rotation.rotated_at
    assert schedule.present is True
    assert schedule.github_updated_at is not None
    row = AuditEvent.objects.get(action="secret.rotate")
    assert row.outcome == AuditEvent.Outcome.SUCCESS
    assert row.detail == {"key_id": key_id}


def test_environment_secret_is_put_into_its_github_environment(
    sim: Simulator, admin_user: User
) -> None:
    env = Environment.objects.create(name="production", repository=REPO)
    schedule = make_schedule("PROD_DB_PASSWORD", scope="environment", environment=env)

    domain.rotate(schedule, "prod-db-rotated", admin_user)

    assert (
        sim.state.decrypt_secret(
            environment_scope(REPO, "production"), "PROD_DB_PASSWORD"
        )
        == "prod-db-rotated"
    )


def test_next_audit_does_not_mistake_our_rotation_for_an_external_one(
    sim: Simulator, admin_user: User
) -> None:
    schedule = make_schedule()
    domain.audit_schedules()
    domain.rotate(schedule, "rotated-here", admin_user)

    report = domain.audit_schedules()

    assert report.external == []
    assert list(schedule.rotations.values_list("source", flat=True)) == [
        SecretRotation.Source.CONTROL_PLANE
    ]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (invalid("Bad request: key_id does not match", "key_id"), 422),
        (ApiError(502, "Server Error"), 502),
    ],
    ids=["refused", "failed"],
)
def test_github_failing_mid_rotation_records_nothing_as_rotated(
    sim: Simulator,
    admin_user: User,
    monkeypatch: pytest.MonkeyPatch,
    error: ApiError,
    status: int,
) -> None:
    schedule = make_schedule()
    domain.audit_schedules()
    schedule.refresh_from_db()
    before = schedule.last_rotated_at
    refuse_puts(monkeypatch, error)

    with pytest.raises(domain.RotationRefused) as refused:
        domain.rotate(schedule, "never-stored", admin_user)

    assert refused.value.status == status
    assert not SecretRotation.objects.exists()
    schedule.refresh_from_db()
    assert schedule.last_rotated_at == before
    assert sim.state.decrypt_secret(repository_scope(REPO), "DEPLOY_KEY") == (
        "demo-deploy-key"
    )
    row = AuditEvent.objects.get(action="secret.rotate")
    assert row.outcome == AuditEvent.Outcome.FAILURE


def test_admin_rotates_through_the_api_with_a_write_only_value(
    sim: Simulator, admin_user: User
) -> None:
    schedule = make_schedule()

    response = logged_in(admin_user).post(
        f"/api/v1/secret-schedules/{schedule.pk}/rotate/",
        {"value": "api-rotated-value"},
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    assert "value" not in response.json()
    assert b"api-rotated-value" not in response.content
    assert response.json()["actor_name"] == admin_user.username
    assert sim.state.decrypt_secret(repository_scope(REPO), "DEPLOY_KEY") == (
        "api-rotated-value"
    )


def test_api_generates_a_strong_value_it_never_shows(
    sim: Simulator, admin_user: User
) -> None:
    schedule = make_schedule()

    response = logged_in(admin_user).post(
        f"/api/v1/secret-schedules/{schedule.pk}/rotate/",
        {"generate": True},
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    generated = sim.state.decrypt_secret(repository_scope(REPO), "DEPLOY_KEY")
    assert len(generated) >= 43  # 32 random bytes, base64
    assert generated.encode() not in response.content


def test_api_answers_502_and_records_nothing_when_github_refuses(
    sim: Simulator, admin_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = make_schedule()
    refuse_puts(monkeypatch, invalid("Bad request", "encrypted_value"))

    response = logged_in(admin_user).post(
        f"/api/v1/secret-schedules/{schedule.pk}/rotate/",
        {"value": "refused-value"},
        content_type="application/json",
    )

    assert response.status_code == 502
    assert response.json()["github_status"] == 422
    assert not SecretRotation.objects.exists()


@pytest.mark.parametrize("persona", ["viewer", "sre", "outsider"])
def test_only_admins_rotate_through_the_api(
    sim: Simulator, persona: str, request: pytest.FixtureRequest
) -> None:
    user: User = request.getfixturevalue(persona)
    schedule = make_schedule()

    response = logged_in(user).post(
        f"/api/v1/secret-schedules/{schedule.pk}/rotate/",
        {"value": "not-allowed"},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert not SecretRotation.objects.exists()
    assert sim.state.decrypt_secret(repository_scope(REPO), "DEPLOY_KEY") == (
        "demo-deploy-key"
    )


def test_api_requires_a_value_or_generate(sim: Simulator, admin_user: User) -> None:
    schedule = make_schedule()

    response = logged_in(admin_user).post(
        f"/api/v1/secret-schedules/{schedule.pk}/rotate/",
        {},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "value" in response.json()
