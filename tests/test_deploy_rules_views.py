"""The deploy rules on the pages: the deploy form's refusal names the rule and offers
the deploy to the source environment, the offer's link fills the form in with the
same ref and commit, and the environment page shows both rules."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from deploys.models import DeployRun
from githubsim import Simulator
from tests.conftest import logged_in
from tests.deploying import simulated_env

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(time_scale=600, seed=17, connect=True, max_retries=1),
]

FORM = "/deploys/new/"


def form_post(user: User, **fields: str) -> str:
    data = {"idempotency_key": "form-1", "change_ticket": "", **fields}
    response = logged_in(user).post(FORM, data)
    assert response.status_code == 400
    return response.content.decode()


def test_the_form_refuses_an_unpromoted_commit_and_offers_staging(
    sim: Simulator, sre: User
) -> None:
    staging = simulated_env(sim, ("staging-1",), name="staging")
    simulated_env(sim, promote_from=staging)
    sha = sim.push("main")
    page = form_post(sre, environment="production", ref="main")
    assert (
        f"<strong>Refused:</strong> {sha[:12]} (main) is not promoted to production: "
        "production deploys only commits that succeeded in staging within 7 days"
    ) in page
    link = re.search(r'id="promote-link" href="([^"]+)"', page)
    assert link is not None
    assert link.group(1) == (
        f"/deploys/new/?environment=staging&amp;ref=main&amp;sha={sha}"
    )
    assert not DeployRun.objects.exists()
    # The offer opens staging's form with the same ref and commit filled in.
    offered = logged_in(sre).get(link.group(1).replace("&amp;", "&"))
    assert offered.status_code == 200
    html = offered.content.decode()
    assert re.search(r'<option value="staging" selected>', html)
    assert re.search(r'name="ref" value="main"', html)
    assert re.search(rf'name="sha" value="{sha}"', html)
    # Submitted, it deploys that exact commit to staging.
    response = logged_in(sre).post(
        FORM,
        {"environment": "staging", "ref": "main", "sha": sha, "idempotency_key": "k2"},
    )
    assert response.status_code == 302
    assert DeployRun.objects.get().sha == sha


def test_the_form_names_the_allowed_refs_rule(sim: Simulator, sre: User) -> None:
    simulated_env(sim, allowed_refs="refs/tags/v*")
    page = form_post(sre, environment="production", ref="main")
    assert (
        "<strong>Refused:</strong> production deploys only refs matching refs/tags/v* "
        "(its allowed_refs rule)"
    ) in page
    assert 'id="promote-link"' not in page


def test_a_malformed_commit_on_the_form_is_an_error_on_its_field(
    sim: Simulator, sre: User
) -> None:
    simulated_env(sim)
    page = form_post(sre, environment="production", ref="main", sha="abc")
    assert "A full 40-character lowercase hexadecimal SHA." in page


def test_the_environment_page_shows_both_rules(sim: Simulator, viewer: User) -> None:
    staging = simulated_env(sim, ("staging-1",), name="staging")
    simulated_env(
        sim,
        promote_from=staging,
        promotion_period_hours=36,
        allowed_refs="refs/tags/v* refs/heads/main",
    )
    page = logged_in(viewer).get("/deploys/environments/production/").content.decode()
    promotion = re.search(r'<dd id="env-promotion">(.*?)</dd>', page)
    assert promotion is not None
    assert (
        'only commits that succeeded in <a href="/deploys/environments/staging/">'
        "staging</a> within 36 hours"
    ) in promotion.group(1)
    refs = re.search(r'<dd id="env-allowed-refs">(.*?)</dd>', page)
    assert refs is not None
    assert re.sub(r"<[^>]+>", "", refs.group(1)).startswith(
        "refs/tags/v*, refs/heads/main"
    )
    open_page = logged_in(viewer).get("/deploys/environments/staging/").content.decode()
    assert '<dd id="env-promotion">not required</dd>' in open_page
    assert '<dd id="env-allowed-refs">any branch or tag</dd>' in open_page
