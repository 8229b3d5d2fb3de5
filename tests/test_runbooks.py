"""Runbooks: every alarm has one, pages render safely, the index searches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client
from pytest_django import DjangoAssertNumQueries

from controlplane import runbooks
from deploys.models import DEPLOY_RUNBOOKS, DeployAttempt, DeployRun
from rotations.models import Status as SecretStatus
from runners.models import Reason, runbook_for
from tests.conftest import ROOT, logged_in

ALERTS_FILE = ROOT / "monitoring/prometheus/alerts.yml"
RUNBOOK_URL = re.compile(r"/runbooks/([a-z0-9-]+)/")
# Codes that need nobody to act: a healthy runner, a person's cancel, a fresh secret.
NOTHING_TO_DO = {
    ("runner", Reason.NONE),
    ("deploy", DeployRun.Reason.NONE),
    ("deploy", DeployRun.Reason.CANCELLED),
    ("failover", DeployAttempt.FailoverReason.NONE),
    ("secret", SecretStatus.OK),
}
ALL_CODES = [
    *(("runner", str(code)) for code in Reason),
    *(("deploy", str(code)) for code in DeployRun.Reason),
    *(("failover", str(code)) for code in DeployAttempt.FailoverReason),
    *(("secret", str(code)) for code in SecretStatus),
]
CODES_NEEDING_A_RUNBOOK = [c for c in ALL_CODES if c not in NOTHING_TO_DO]


def alert_rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def slug_of(url: str) -> str:
    match = RUNBOOK_URL.search(url)
    assert match, url
    return match.group(1)


# -- every alarm has a runbook -------------------------------------------------------


@pytest.mark.parametrize(("namespace", "code"), CODES_NEEDING_A_RUNBOOK)
def test_every_reason_code_and_status_has_a_runbook(namespace: str, code: str) -> None:
    page = runbooks.for_reason(namespace, code)
    assert page is not None, f"no runbook lists {namespace}:{code} in its reasons"


def test_reasons_link_to_the_page_that_explains_them() -> None:
    """The slugs the models link (runner reasons, deploy failures) are served, by
    the page whose front matter names the code (directly or through an alias)."""
    for code in Reason:
        if ("runner", code) in NOTHING_TO_DO:
            assert runbook_for(code) == ""
            continue
        linked = runbooks.get(runbook_for(code))
        assert linked is not None, f"runner reason {code} links to a missing page"
        assert linked == runbooks.for_reason("runner", code)
    for failure in DeployRun.Reason:
        if ("deploy", failure) in NOTHING_TO_DO:
            assert failure not in DEPLOY_RUNBOOKS
            continue
        linked = runbooks.get(DEPLOY_RUNBOOKS[failure])
        assert linked is not None, f"deploy reason {failure} links to a missing page"
        assert linked == runbooks.for_reason("deploy", failure)


def test_front_matter_names_only_real_codes() -> None:
    known = {f"{namespace}:{code}" for namespace, code in ALL_CODES}
    for page in runbooks.load().values():
        unknown = set(page.reasons) - known
        assert not unknown, f"{page.slug} names unknown reason codes {unknown}"


def test_every_alert_links_the_runbook_that_lists_it() -> None:
    rules = alert_rules()
    assert rules
    for rule in rules:
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        page = runbooks.get(slug_of(annotations["runbook_url"]))
        assert page is not None, (
            f"{rule['alert']}: no page {annotations['runbook_url']}"
        )
        assert page.slug == slug_of(annotations["runbook_url"]), "link the page itself"
        assert rule["alert"] in page.alerts, (
            f"{page.slug} does not list {rule['alert']}"
        )


def test_runbooks_list_only_alerts_that_exist() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    for page in runbooks.load().values():
        assert set(page.alerts) <= names, (page.slug, set(page.alerts) - names)


def test_the_issue_scenarios_each_have_a_page() -> None:
    pages = runbooks.load()
    for slug in (
        "runner-heartbeat-stale",
        "runner-degraded",
        "github-offline-heartbeat-ok",
        "monitoring-gap",
        "deploy-waiting-for-runner",
        "deploy-failed-over",
        "deploy-no-healthy-runner",
        "deploy-failed",
        "secret-overdue",
        "secret-missing",
        "github-api-budget",
        "webhook-signature-failures",
        "celery-beat-stale",
        "control-plane-tasks-stale",
        "database-or-broker-unreachable",
    ):
        assert slug in pages, slug


def test_links_between_runbooks_resolve() -> None:
    for page in runbooks.load().values():
        for slug in RUNBOOK_URL.findall(page.body):
            assert runbooks.get(slug), f"{page.slug} links to missing {slug}"


def test_slugs_and_aliases_never_collide() -> None:
    pages = runbooks.load()
    aliases = [alias for page in pages.values() for alias in page.aliases]
    assert len(aliases) == len(set(aliases))
    assert not set(aliases) & set(pages)


# -- parsing and rendering ----------------------------------------------------------


def test_every_page_has_the_five_sections_in_order() -> None:
    for page in runbooks.load().values():
        sections = [s for s in page.sections() if s in runbooks.SECTIONS]
        assert sections == list(runbooks.SECTIONS), page.slug
        assert page.summary, page.slug


def test_a_page_without_front_matter_or_sections_is_refused(tmp_path: Path) -> None:
    bare = tmp_path / "bare.md"
    bare.write_text("## Symptoms\n\nno front matter\n")
    with pytest.raises(runbooks.RunbookError, match="front matter"):
        runbooks.parse(bare)
    partial = tmp_path / "partial.md"
    partial.write_text("---\ntitle: Partial\nseverity: warning\n---\n## Symptoms\n")
    with pytest.raises(runbooks.RunbookError, match="Impact"):
        runbooks.parse(partial)
    wrong = tmp_path / "wrong.md"
    wrong.write_text("---\ntitle: Wrong\nseverity: urgent\n---\n")
    with pytest.raises(runbooks.RunbookError, match="severity"):
        runbooks.parse(wrong)


def test_rendering_keeps_markdown_and_strips_active_content() -> None:
    html = runbooks.render_markdown(
        "## Diagnosis\n\n"
        "Run `df -h` then [the fleet](/fleet/).\n\n"
        "<script>alert(1)</script>\n\n"
        '<img src=x onerror="alert(2)">\n\n'
        "[click](javascript:alert(3))\n\n"
        '<a href="/x" onclick="alert(4)">x</a>\n\n'
        "```\ncurl $SITE/readyz\n```\n"
    )
    assert '<h2 id="diagnosis">Diagnosis</h2>' in html
    assert "<code>df -h</code>" in html
    assert '<a href="/fleet/" rel="noopener noreferrer">the fleet</a>' in html
    assert "<pre><code>curl $SITE/readyz\n</code></pre>" in html
    for active in ("<script", "onerror", "javascript:", "onclick", "<img"):
        assert active not in html


def test_search_matches_every_word_titles_and_alerts_first() -> None:
    found = runbooks.search("heartbeat stale")
    assert found[0].slug == "runner-heartbeat-stale"
    assert all(page.matches(["heartbeat", "stale"]) for page in found)
    assert [p.slug for p in runbooks.search("CeleryBeatTickStale")][0] == (
        "celery-beat-stale"
    )
    assert runbooks.search("secret:missing")[0].slug == "secret-missing"
    assert runbooks.search("no-such-words-anywhere") == []
    assert len(runbooks.search("")) == len(runbooks.load())


# -- views ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_index_lists_every_runbook_for_a_viewer(
    viewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    client = logged_in(viewer)
    # Session, user and role bookkeeping and the stopped-jobs banner only: the
    # pages are files, not rows.
    with django_assert_num_queries(7):
        response = client.get("/runbooks/")
    assert response.status_code == 200
    html = response.content.decode()
    for page in runbooks.load().values():
        assert f'href="/runbooks/{page.slug}/"' in html
    assert html.count('class="badge badge-') == len(runbooks.load())


@pytest.mark.django_db
def test_index_search_narrows_the_list(viewer: User) -> None:
    html = logged_in(viewer).get("/runbooks/", {"q": "rate limited"}).content.decode()
    assert 'href="/runbooks/github-api-budget/"' in html
    assert 'href="/runbooks/runner-degraded/"' not in html
    empty = logged_in(viewer).get("/runbooks/", {"q": "zzzz-nothing"}).content.decode()
    assert "No runbook matches" in empty


@pytest.mark.django_db
def test_page_shows_front_matter_and_rendered_sections(viewer: User) -> None:
    response = logged_in(viewer).get("/runbooks/runner-heartbeat-stale/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Runner heartbeat stale</h1>" in html
    assert "<code>RunnerHeartbeatStale</code>" in html
    assert "<code>runner:heartbeat_stale</code>" in html
    for section in runbooks.SECTIONS:
        assert f">{section}</h2>" in html
    assert "systemctl status runner-heartbeat.timer" in html


@pytest.mark.django_db
def test_aliases_redirect_permanently_and_unknown_slugs_are_404(viewer: User) -> None:
    client = logged_in(viewer)
    response = client.get("/runbooks/deploy-missing-secrets/")
    assert response.status_code == 301
    assert response["Location"] == "/runbooks/secret-missing/"
    assert client.get("/runbooks/no-such-page/").status_code == 404


@pytest.mark.django_db
def test_runbooks_need_a_role(outsider: User) -> None:
    assert Client().get("/runbooks/monitoring-gap/").status_code == 302
    assert logged_in(outsider).get("/runbooks/monitoring-gap/").status_code == 403
