"""Property-based tests of the whole REST API against its own OpenAPI schema.

Every operation in /api/schema/ (so every endpoint any app adds later) is one test
per generation mode, named after the operation: called with generated valid
(positive) and invalid (negative) inputs through the WSGI application, as an admin
with a knox token, with the GitHub simulator standing in for GitHub. Every check
schemathesis has runs on every response: no server error; documented status codes,
content types, headers and response schemas; valid requests accepted and invalid
ones rejected; missing auth refused; unsupported methods answered 405. The few
(operation, check) pairs a check cannot apply to are listed in ``EXCLUDED`` with
the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from knox.models import AuthToken
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from controlplane.wsgi import application
from githubsim import Simulator

# Enough to reach every branch of the filters and serializers, small enough that the
# whole schema runs in seconds.
MAX_EXAMPLES = 10


pytestmark = pytest.mark.sim(time_scale=60, seed=7, runners=3)


@pytest.fixture
def admin_token(admin_user: User) -> str:
    _, token = AuthToken.objects.create(admin_user, timedelta(days=1))
    return str(token)


def generated_schema() -> dict[str, Any]:
    """The schema /api/schema/ serves, built at collection time so that pytest can
    list one test per operation (``test_schema_under_test_is_the_served_one``
    checks they are the same)."""
    generator: Any = SchemaGenerator()  # type: ignore[no-untyped-call]
    rendered = OpenApiJsonRenderer().render(generator.get_schema(public=True))
    loaded: dict[str, Any] = json.loads(rendered)
    return loaded


schema = schemathesis.openapi.from_dict(generated_schema())
schema.app = application
# Every string field refuses NUL (PostgreSQL cannot store it; DRF answers 400 naming
# the field), which JSON Schema has no short way to say.
schema.config.generation.update(allow_x00=False)


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """Calls go straight to the WSGI application, whose request signals close "old"
    database connections, the test's own included (PostgreSQL then answers "the
    connection is closed"); Django's test client detaches the same handler."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _github_is_the_simulator(sim: Simulator, settings: Any) -> None:
    settings.GITHUB_API_URL = sim.url
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.django_db
def test_schema_under_test_is_the_served_one(admin_token: str) -> None:
    response = Client().get(
        "/api/schema/",
        {"format": "json"},
        headers={"Authorization": f"Token {admin_token}"},
    )

    assert response.status_code == 200
    assert response.json() == generated_schema()


def _operations() -> dict[str, Any]:
    found = {}
    for result in schema.get_all_operations():
        # An operation the schema cannot describe is a failure here, at collection.
        assert isinstance(result, Ok), result
        operation = result.ok()
        found[operation.label] = operation
    return found


OPERATIONS = _operations()
load_all_checks()
# Every check schemathesis has (object_level_authorization needs a second
# identity's configuration and does nothing without one).
ALL_CHECKS: dict[str, Any] = {
    name: CHECKS.get_one(name) for name in CHECKS.get_all_names()
}
# (operation label, check name) → why that check cannot apply to that operation.
# A body that names other objects (an environment, runners) is schema-valid for any
# name, but only a name that exists can be accepted: the rest are a 400 naming the
# field. Generated names never exist, so "valid data accepted" cannot hold there.
_NAMES_OTHER_OBJECTS = "the body names other objects, which must exist"
EXCLUDED: dict[tuple[str, str], str] = {
    (label, "positive_data_acceptance"): _NAMES_OTHER_OBJECTS
    for label in (
        "POST /api/v1/deploys/",
        "POST /api/v1/deploys/redeploy-last-good/",
        "POST /api/v1/deploys/rollback/",
        "POST /api/v1/environments/",
        "POST /api/v1/freeze-windows/",
        "POST /api/v1/secret-schedules/",
    )
}
# An inventory's text has a grammar (Ansible INI or YAML) JSON Schema cannot state:
# most schema-valid strings are not readable inventories, a 400 naming the line.
EXCLUDED[("POST /api/v1/inventory/", "positive_data_acceptance")] = (
    "the content must read as an inventory naming runners"
)


@pytest.mark.django_db
@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_api_conforms_to_its_schema(
    label: str, mode: GenerationMode, admin_token: str
) -> None:
    operation = OPERATIONS[label]
    checks = [
        check for name, check in ALL_CHECKS.items() if (label, name) not in EXCLUDED
    ]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Token {admin_token}"}, checks=checks
        )

    try:
        run()
    except Unsatisfiable:
        # Nothing in the operation can be made invalid and still be sent (no
        # parameters or body, or only a path segment whose negation needs a "/").
        if mode is not GenerationMode.NEGATIVE:
            raise
        pytest.skip(f"no invalid request can be sent to {label}")
