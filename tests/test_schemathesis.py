"""Property-based tests of the whole REST API against its own OpenAPI schema.

Every operation in /api/schema/ (so every endpoint any app adds later) is called with
generated inputs through the WSGI application, as an admin with a knox token, with
the GitHub simulator standing in for GitHub. Each response must not be a server
error, must use a documented status code and content type, and must match the
documented response schema.
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
from hypothesis import HealthCheck, settings
from knox.models import AuthToken
from schemathesis import checks as generic_checks
from schemathesis.specs.openapi import checks

from controlplane.wsgi import application
from githubsim import Simulator

# Enough to reach every branch of the filters and serializers, small enough that the
# whole schema runs in seconds.
MAX_EXAMPLES = 10


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(time_scale=60, seed=7, runners=3) as s:
        yield s


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


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any, admin_token: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Token {admin_token}"},
        checks=[
            generic_checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
        ],
    )
