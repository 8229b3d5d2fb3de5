"""Personas and shared fixtures: an admin, an SRE, a viewer and an outsider (no role)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from controlplane.celery import app as celery_app
from githubsim import Simulator

PASSWORD = "correct-horse-battery-staple"  # noqa: S105

# The browser tests' ``browser`` and ``page`` fixtures.
pytest_plugins = ("tests.browsing",)

ROOT = Path(__file__).resolve().parent.parent
# The broker the suite was started with (CI's second run: Redis), for the real worker
# processes some tests start; code under test in this process gets an in-memory one.
SUITE_BROKER_URL = os.environ.get("CELERY_BROKER_URL")


@pytest.fixture(autouse=True, scope="session")
def _in_memory_broker() -> None:
    """Messages enqueued by code under test stay in this process; tests call task
    functions directly, and the few end-to-end tests start real workers with the
    suite's broker (``process_env``)."""
    # Celery reads CELERY_BROKER_URL from the environment before its own settings.
    os.environ["CELERY_BROKER_URL"] = "memory://"
    celery_app.conf.update(broker_url="memory://", broker_transport_options={})


@pytest.fixture(autouse=True)
def _fresh_github_gateways() -> Iterator[None]:
    """Each test builds its GitHub gateways from its own settings. A gateway cached
    by an earlier test points at that test's simulator, gone by now: calls to it
    would retry a dead port with backoff (minutes), or see another test's budget."""
    from controlplane.github import reset_gateway

    reset_gateway()
    yield
    reset_gateway()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse transactional tests without serialized rollback.

    A transactional test empties every table when it ends, and Django then recreates
    only content types and permissions, not the role groups migrations made; a later
    serialized-rollback test then collides with those recreated rows. Each such test
    restoring the migrated data itself keeps every order of tests working.
    """
    offenders = []
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "transactional_db" not in names and "live_server" not in names:
            marker = item.get_closest_marker("django_db")
            if marker is None or not marker.kwargs.get("transaction"):
                continue
        marker = item.get_closest_marker("django_db")
        if marker is None or not marker.kwargs.get("serialized_rollback"):
            offenders.append(item.nodeid)
    if offenders:
        raise pytest.UsageError(
            "mark transactional tests with @pytest.mark.django_db(transaction=True, "
            "serialized_rollback=True): " + ", ".join(offenders)
        )


@pytest.fixture
def sim(request: pytest.FixtureRequest, settings: Any) -> Iterator[Simulator]:
    """The GitHub simulator, configured by the test's ``@pytest.mark.sim(...)``.

    The marker's keyword arguments go to ``Simulator``, except:
    ``connect`` (default False): point the project's GitHub settings at it (a token,
    ``repository``, no App) so the real gateway talks to it;
    ``max_retries``: the gateway's ``GITHUB_MAX_RETRIES`` (settings default if absent);
    ``settings``: further Django settings the test needs;
    ``add_runners``: ``{name: labels}`` registered before the test starts.
    """
    marker = request.node.get_closest_marker("sim")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    connect = options.pop("connect", False)
    repository = options.pop("repository", "acme/deploy")
    max_retries = options.pop("max_retries", None)
    extra_settings: dict[str, Any] = options.pop("settings", {})
    add_runners: dict[str, list[str]] = options.pop("add_runners", {})
    with Simulator(**options) as simulator:
        if connect:
            settings.GITHUB_API_URL = simulator.url
            settings.GITHUB_TOKEN = "ghp_simulator_test_token"  # noqa: S105
            settings.GITHUB_REPOSITORY = repository
            settings.GITHUB_APP_ID = ""
            if max_retries is not None:
                settings.GITHUB_MAX_RETRIES = max_retries
        for name, value in extra_settings.items():
            setattr(settings, name, value)
        for name, labels in add_runners.items():
            simulator.add_runner(name, labels)
        yield simulator


# Tags the deploy-request tests ask for besides the branch main.
REQUESTED_TAGS = ("v1", "v1.2", "v1.2.3", "v2", "v3", "v9", "release")


@pytest.fixture(scope="session")
def _shared_github() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def github(_shared_github: Simulator, settings: Any) -> Simulator:
    """GitHub for tests that request deploys without running them: a deploy request
    resolves its ref to a commit there. One simulator for the session, reset for
    each test, connected like ``@pytest.mark.sim(connect=True)``, with ``main`` and
    the tags in ``REQUESTED_TAGS`` on its first commit. A test's own ``sim`` fixture,
    set up after this one, takes over the settings."""
    _shared_github.reset()
    for tag in REQUESTED_TAGS:
        _shared_github.create_tag(tag)
    settings.GITHUB_API_URL = _shared_github.url
    settings.GITHUB_TOKEN = "ghp_simulator_test_token"  # noqa: S105
    settings.GITHUB_REPOSITORY = "acme/deploy"
    settings.GITHUB_APP_ID = ""
    return _shared_github


def make_user(username: str, role: str | None) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def admin_user(db: None) -> User:
    return make_user("ada-admin", "admin")


@pytest.fixture
def sre(db: None) -> User:
    return make_user("sam-sre", "sre")


@pytest.fixture
def viewer(db: None) -> User:
    return make_user("val-viewer", "viewer")


@pytest.fixture
def outsider(db: None) -> User:
    return make_user("oscar-outsider", None)


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client_(admin_user: User) -> Client:
    return logged_in(admin_user)


@pytest.fixture
def sre_client(sre: User) -> Client:
    return logged_in(sre)


@pytest.fixture
def viewer_client(viewer: User) -> Client:
    return logged_in(viewer)


@pytest.fixture(scope="module")
def process_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for real processes a test starts (gunicorn, a Celery worker, beat).

    They cannot see the test database (its rows live in an open transaction), so
    they get a migrated database of their own: a SQLite file, or a new PostgreSQL
    database (dropped afterwards) when DATABASE_URL names PostgreSQL. VAR_DIR is a
    fresh folder, so the filesystem broker is private too; CELERY_BROKER_URL is
    passed through (CI's second run uses Redis) with a key prefix of its own.
    """
    var_dir = tmp_path_factory.mktemp("var")
    base_url = os.environ.get("DATABASE_URL", "")
    scratch_name = ""
    if base_url.startswith(("postgres://", "postgresql://")):
        scratch_name = f"scratch_{secrets.token_hex(6)}"
        database_url = urlunsplit(urlsplit(base_url)._replace(path=f"/{scratch_name}"))
        _postgres_admin(base_url, f'CREATE DATABASE "{scratch_name}"')
    else:
        database_url = f"sqlite:///{var_dir / 'controlplane.sqlite3'}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VAR_DIR": str(var_dir),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("CELERY_BROKER_URL", None)
    if SUITE_BROKER_URL:
        env["CELERY_BROKER_URL"] = SUITE_BROKER_URL
        # Tests run in parallel: a worker must never take another test's tasks.
        env["CELERY_BROKER_KEY_PREFIX"] = f"test-{secrets.token_hex(6)}:"
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        yield env
    finally:
        if scratch_name:
            _postgres_admin(base_url, f'DROP DATABASE "{scratch_name}" WITH (FORCE)')


def _postgres_admin(database_url: str, statement: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(statement.encode())


def manage_shell(env: dict[str, str], code: str) -> str:
    """Run ``code`` in ``manage.py shell`` against ``env``'s database; its stdout."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def require_tool(name: str) -> str:
    """The path of a tool a test drives, from the virtualenv (actionlint, zizmor: dev
    requirements) or the system (promtool, amtool): a skip when it is missing, a
    failure when REQUIRE_TOOLS is set (CI installs them)."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.is_file() else shutil.which(name)
    if path is None:
        if os.environ.get("REQUIRE_TOOLS"):
            pytest.fail(f"{name} is required (REQUIRE_TOOLS is set) but not installed")
        pytest.skip(f"{name} is not installed")
    return path
