"""Personas and shared fixtures: an admin, an SRE, a viewer and an outsider (no role)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from controlplane.celery import app as celery_app

PASSWORD = "correct-horse-battery-staple"  # noqa: S105


@pytest.fixture(autouse=True, scope="session")
def _in_memory_broker() -> None:
    """Messages enqueued by code under test stay in this process; tests call task
    functions directly, and the few end-to-end tests start real workers with their
    own broker."""
    celery_app.conf.broker_url = "memory://"
    celery_app.conf.broker_transport_options = {}


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
