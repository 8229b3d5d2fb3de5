"""GitHub names: one grammar (``controlplane.names``) for owners, organizations,
repositories, environments, secrets and workflow files, enforced by the API, the
admin's model validation, settings, and again by the gateway before any HTTP call."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from controlplane import names
from controlplane.github import GitHubGateway, GitHubValidationError
from deploys.models import Environment
from githubsim import Simulator
from rotations import domain
from rotations.models import SecretRotationSchedule
from tests.conftest import logged_in

REPO = "acme/deploy"
TRAVERSAL = "octocat/Hello-World/../../../orgs/acme"


pytestmark = pytest.mark.sim(
    time_scale=60,
    seed=3,
    connect=True,
    max_retries=0,
    settings={"GITHUB_ORGANIZATION": ""},
)


def requests_seen(sim: Simulator) -> int:
    return sum(sim.state.request_counts().values())


# The grammar ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (names.Kind.OWNER, "octocat"),
        (names.Kind.OWNER, "a-b-c"),
        (names.Kind.OWNER, "octo--cat"),
        (names.Kind.OWNER, "x" * 39),
        (names.Kind.ORGANIZATION, "acme-corp"),
        (names.Kind.REPOSITORY, "octocat/Hello-World"),
        (names.Kind.REPOSITORY, "acme/.github"),
        (names.Kind.REPOSITORY, "acme/some_repo.js"),
        (names.Kind.ENVIRONMENT, "production"),
        (names.Kind.ENVIRONMENT, "EU West (blue)"),
        (names.Kind.SECRET, "DEPLOY_KEY"),
        (names.Kind.SECRET, "_private2"),
        (names.Kind.WORKFLOW, "deploy.yml"),
    ],
)
def test_github_names_that_are_accepted(kind: names.Kind, value: str) -> None:
    assert names.problem(kind, value) is None


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (names.Kind.OWNER, ""),
        (names.Kind.OWNER, "-octocat"),
        (names.Kind.OWNER, "octocat-"),
        (names.Kind.OWNER, "x" * 40),
        (names.Kind.OWNER, "a-" * 20 + "b"),
        (names.Kind.OWNER, "octo_cat"),
        (names.Kind.ORGANIZATION, "acme/x"),
        (names.Kind.ORGANIZATION, "acme\n"),
        (names.Kind.REPOSITORY, TRAVERSAL),
        (names.Kind.REPOSITORY, "acme"),
        (names.Kind.REPOSITORY, "acme/.."),
        (names.Kind.REPOSITORY, "acme/."),
        (names.Kind.REPOSITORY, "../deploy"),
        (names.Kind.REPOSITORY, "acme/deploy\n"),
        (names.Kind.REPOSITORY, "acme/dep loy"),
        (names.Kind.REPOSITORY, "acme/" + "r" * 101),
        (names.Kind.ENVIRONMENT, ""),
        (names.Kind.ENVIRONMENT, ".."),
        (names.Kind.ENVIRONMENT, "prod/../../x"),
        (names.Kind.ENVIRONMENT, "prod\x00"),
        (names.Kind.ENVIRONMENT, " production"),
        (names.Kind.ENVIRONMENT, "e" * 256),
        (names.Kind.SECRET, "GITHUB_TOKEN"),
        (names.Kind.SECRET, "github_token"),
        (names.Kind.SECRET, "1KEY"),
        (names.Kind.SECRET, "KEY-1"),
        (names.Kind.SECRET, "KEY\n"),
        (names.Kind.SECRET, "K" * 256),
        (names.Kind.WORKFLOW, ".."),
        (names.Kind.WORKFLOW, "../x.yml"),
        (names.Kind.SECRET, 7),
    ],
)
def test_github_names_that_are_refused(kind: names.Kind, value: Any) -> None:
    assert names.problem(kind, value) is not None
    with pytest.raises(ValidationError):
        names.NameValidator(kind)(value)


# Models and the API -----------------------------------------------------------------


@pytest.mark.django_db
def test_schedule_model_validation_refuses_a_traversing_repository() -> None:
    schedule = SecretRotationSchedule(name="DEPLOY_KEY", repository=TRAVERSAL)

    with pytest.raises(ValidationError) as caught:
        schedule.full_clean()

    assert "repository" in caught.value.message_dict


@pytest.mark.django_db
def test_environment_model_validation_refuses_bad_names() -> None:
    env = Environment(
        name="production",
        repository="acme/../x",
        workflow_file="../deploy.yml",
        required_secrets=["OK", "GITHUB_X"],
    )

    with pytest.raises(ValidationError) as caught:
        env.full_clean()

    assert {"repository", "workflow_file", "required_secrets"} <= set(
        caught.value.message_dict
    )


@pytest.mark.django_db
def test_api_refuses_a_schedule_whose_repository_leaves_its_path(
    admin_user: User, sim: Simulator
) -> None:
    response = logged_in(admin_user).post(
        "/api/v1/secret-schedules/",
        {"name": "DEPLOY_KEY", "repository": TRAVERSAL},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "repository" in response.json()
    assert not SecretRotationSchedule.objects.exists()


@pytest.mark.django_db
def test_api_refuses_organization_scope_without_the_setting(
    admin_user: User, sim: Simulator
) -> None:
    response = logged_in(admin_user).post(
        "/api/v1/secret-schedules/",
        {"name": "SLACK_WEBHOOK", "scope": "organization"},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "GITHUB_ORGANIZATION" in response.json()["scope"][0]
    assert not SecretRotationSchedule.objects.exists()


@pytest.mark.django_db
def test_api_accepts_organization_scope_with_the_setting(
    admin_user: User, sim: Simulator, settings: Any
) -> None:
    settings.GITHUB_ORGANIZATION = "acme"

    response = logged_in(admin_user).post(
        "/api/v1/secret-schedules/",
        {"name": "SLACK_WEBHOOK", "scope": "organization"},
        content_type="application/json",
    )

    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_admin_form_refuses_organization_scope_without_the_setting() -> None:
    schedule = SecretRotationSchedule(name="SLACK_WEBHOOK", scope="organization")

    with pytest.raises(ValidationError) as caught:
        schedule.full_clean()

    assert "GITHUB_ORGANIZATION" in caught.value.message_dict["scope"][0]


@pytest.mark.django_db
def test_rotating_an_organization_secret_without_the_setting_is_a_400(
    admin_user: User, sim: Simulator
) -> None:
    # Made before the setting was removed (or straight in the database).
    schedule = SecretRotationSchedule.objects.create(
        name="SLACK_WEBHOOK", scope="organization"
    )
    before = requests_seen(sim)

    response = logged_in(admin_user).post(
        f"/api/v1/secret-schedules/{schedule.pk}/rotate/",
        {"generate": True},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "GITHUB_ORGANIZATION" in json.dumps(response.json())
    assert requests_seen(sim) == before
    assert not schedule.rotations.exists()


@pytest.mark.django_db
def test_rotating_a_schedule_with_a_traversing_repository_calls_nothing(
    admin_user: User, sim: Simulator
) -> None:
    # A row written before validation existed (bulk_create skips validation).
    SecretRotationSchedule.objects.bulk_create(
        [SecretRotationSchedule(name="DEPLOY_KEY", repository=TRAVERSAL)]
    )
    schedule = SecretRotationSchedule.objects.get()
    before = requests_seen(sim)

    response = logged_in(admin_user).post(
        f"/api/v1/secret-schedules/{schedule.pk}/rotate/",
        {"generate": True},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "not a valid GitHub repository" in response.json()["repository"]
    assert requests_seen(sim) == before
    assert not schedule.rotations.exists()


# The gateway ------------------------------------------------------------------------


def gateway_for(sim: Simulator, **kw: Any) -> GitHubGateway:
    options: dict[str, Any] = {
        "base_url": sim.url,
        "repository": REPO,
        "token": "ghp_names_test",
        "sink": lambda counter, headers: None,
        "max_retries": 0,
    }
    options.update(kw)
    return GitHubGateway(**options)


@pytest.mark.parametrize(
    "kw",
    [
        {"repository": TRAVERSAL},
        {"repository": "acme/deploy?x=1"},
        {"organization": "acme/../../repos/x"},
    ],
)
def test_gateway_refuses_bad_repository_or_organization_before_any_call(
    sim: Simulator, kw: dict[str, str]
) -> None:
    before = requests_seen(sim)

    with pytest.raises(GitHubValidationError, match="refusing to call GitHub"):
        gateway_for(sim, **kw)

    assert requests_seen(sim) == before


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("put_secret", ("repository", "../../orgs/acme/actions/secrets/X", "v")),
        ("put_secret", ("environment", "DEPLOY_KEY", "v", "..")),
        ("list_secrets", ("environment", "prod/../../../orgs/acme")),
        ("get_public_key", ("environment", "..")),
        ("list_workflow_runs", ("../../../orgs/acme",)),
        ("dispatch_workflow", ("..", "main", {})),
    ],
)
def test_gateway_refuses_bad_path_segments_before_any_call(
    sim: Simulator, call: str, args: tuple[Any, ...]
) -> None:
    gh = gateway_for(sim)
    before = requests_seen(sim)

    with pytest.raises(GitHubValidationError, match="refusing to call GitHub"):
        getattr(gh, call)(*args)

    assert requests_seen(sim) == before


def test_gateway_organization_scope_without_organization_names_the_setting(
    sim: Simulator,
) -> None:
    gh = gateway_for(sim)
    before = requests_seen(sim)

    with pytest.raises(GitHubValidationError, match="GITHUB_ORGANIZATION"):
        gh.put_secret("organization", "SLACK_WEBHOOK", "v")

    assert requests_seen(sim) == before


def test_gateway_quotes_an_environment_name_it_accepts(sim: Simulator) -> None:
    gh = gateway_for(sim)

    # A space and parentheses are GitHub-legal; they travel percent-encoded.
    assert gh.list_secrets("environment", "EU West (blue)") == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [("GITHUB_REPOSITORY", TRAVERSAL), ("GITHUB_ORGANIZATION", "acme/../x")],
)
def test_settings_refuse_bad_github_names(variable: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            "PATH": "/usr/bin:/bin",
            variable: value,
        },
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert f"ImproperlyConfigured: {variable}:" in result.stderr


@pytest.mark.django_db
def test_rotation_of_a_traversing_repository_fails_in_the_gateway(
    admin_user: User, sim: Simulator
) -> None:
    # Past every check above, the gateway is the last line.
    SecretRotationSchedule.objects.bulk_create(
        [SecretRotationSchedule(name="DEPLOY_KEY", repository=TRAVERSAL)]
    )
    schedule = SecretRotationSchedule.objects.get()
    before = requests_seen(sim)

    with pytest.raises(domain.RotationRefused, match="refusing to call GitHub"):
        domain.rotate(schedule, "value", admin_user)

    assert requests_seen(sim) == before
    assert not schedule.rotations.exists()
