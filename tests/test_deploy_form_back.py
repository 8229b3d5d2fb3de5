"""Back from a production deploy's confirmation step draws the form again as it was
filled in (environment, ref, commit, ticket, break-glass reason, the same
idempotency key), and requests nothing."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from deploys.models import DeployRun
from githubsim import Simulator
from runners.models import State
from tests.conftest import logged_in
from tests.factories import make_env, pool_runner

pytestmark = [pytest.mark.django_db]

FORM = "/deploys/new/"


def hidden_fields(html: str) -> dict[str, str]:
    """The confirmation's form as a browser would send it."""
    form = html.split('id="deploy-confirm"')[1].split("</form>")[0]
    return dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    )


def test_back_from_the_confirmation_keeps_what_was_typed(
    github: Simulator, admin_user: User
) -> None:
    make_env("production", pool_runner("prod-1", State.HEALTHY), production=True)
    sha = github.push("main")
    typed = {
        "environment": "production",
        "ref": "main",
        "sha": sha,
        "change_ticket": "OPS-42",
        "break_glass_reason": "hotfix for the outage",
        "idempotency_key": "form-7",
    }
    client = logged_in(admin_user)
    confirm = client.post(FORM, typed).content.decode()
    sent = hidden_fields(confirm)
    assert 'id="confirm-back"' in confirm

    back = client.post(FORM, {**sent, "back": "on"})

    assert back.status_code == 200
    html = back.content.decode()
    assert 'aria-label="Deploy"' in html and 'id="deploy-confirm"' not in html
    assert '<option value="production" selected>' in html
    assert re.search(r'name="ref" value="main"', html)
    assert re.search(rf'name="sha" value="{sha}"', html)
    assert re.search(r'name="change_ticket" value="OPS-42"', html)
    assert re.search(r'name="break_glass_reason" value="hotfix for the outage"', html)
    # The same form: submitting it later still requests one deploy, not two.
    assert re.search(r'name="idempotency_key" value="form-7"', html)
    assert 'class="errorlist"' not in html
    assert not DeployRun.objects.exists()
