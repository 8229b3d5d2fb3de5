"""A real browser (headless Chromium) signs in, finds its way around and signs out."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.models import AuditEvent
from tests.conftest import PASSWORD
from tests.processes import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    # live_server empties the tables after each test; serialized rollback puts back
    # what the migrations made (the role groups) for the tests that follow.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]


def test_sre_logs_in_sees_the_navigation_and_logs_out(
    live_server: Any, sre: User, page: Any
) -> None:
    page.goto(f"{live_server.url}/audit/")
    # Anonymous: sent to the login page, which remembers where they were going.
    assert page.url.startswith(f"{live_server.url}/accounts/login/?next=/audit/")

    page.fill("input[name=username]", sre.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    page.wait_for_url(f"{live_server.url}/audit/")
    nav = page.locator("nav[aria-label=Sections]")
    assert nav.locator("a[aria-current=page]").inner_text() == "Audit"
    assert page.locator(".account .username").inner_text() == sre.username
    assert page.locator(".account .role").inner_text() == "sre"
    # The page's own login shows in the audit table, styled by the vendored CSS.
    assert page.locator("td .badge-success").count() >= 1
    background = page.locator(".topbar").evaluate(
        "el => getComputedStyle(el).backgroundColor"
    )
    assert background == "rgb(29, 35, 48)"
    assert page.evaluate("typeof htmx") == "object"

    assert any(url.endswith("/static/vendor/htmx.min.js") for url in page.requested)
    assert all(url.startswith(live_server.url) for url in page.requested)

    page.click("text=Log out")

    page.wait_for_url(f"{live_server.url}/accounts/login/")
    assert page.locator(".messages").inner_text() == "You have been logged out."
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url
    assert list(
        AuditEvent.objects.filter(actor=sre).values_list("action", flat=True)
    ) == ["session.logout", "session.login"]


def test_wrong_password_shows_an_error_and_is_audited(
    live_server: Any, viewer: User, page: Any
) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", viewer.username)
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")

    assert "did not match" in page.locator(".messages").inner_text()
    assert AuditEvent.objects.get(action="session.login").outcome == "failure"


def test_api_docs_render_offline_for_a_viewer(
    live_server: Any, viewer: User, page: Any
) -> None:
    page.goto(f"{live_server.url}/accounts/login/?next=/api/docs/")
    page.fill("input[name=username]", viewer.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    page.wait_for_url(f"{live_server.url}/api/docs/")
    # Swagger UI draws the operations from /api/schema/ with its vendored scripts.
    page.wait_for_selector("text=/api/v1/audit-events/")
    assert "Runner control plane API" in page.locator(".swagger-ui").inner_text()
    assert any("/static/drf_spectacular_sidecar/" in url for url in page.requested)
    assert all(url.startswith(live_server.url) for url in page.requested)
