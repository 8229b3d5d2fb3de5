"""Runbooks: the Markdown pages in ``runbooks/`` that every alarm links to.

Each file is ``<slug>.md`` with YAML front matter::

    ---
    title: Runner heartbeat stale
    severity: critical
    alerts: [RunnerHeartbeatStale]
    reasons: ["runner:heartbeat_stale"]
    aliases: [heartbeat-stale]
    ---
    ## Symptoms
    ...

``reasons`` name the codes the page explains, namespaced by where they come from:
``runner:`` (``runners.models.Reason``), ``deploy:`` (``DeployRun.Reason``),
``failover:`` (``DeployAttempt.FailoverReason``) and ``secret:`` (secret statuses).
``aliases`` are older or alternative slugs that redirect to the page. Pages are read
once per process: they ship with the code, so a deploy is the only way they change.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import markdown
import nh3
import yaml
from django.conf import settings

RUNBOOK_DIR = Path(settings.BASE_DIR) / "runbooks"
SEVERITIES = ("critical", "warning", "info")
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
# Every page must cover these, in this order (the SRE reads top to bottom).
SECTIONS = ("Symptoms", "Impact", "Diagnosis", "Remediation", "Escalation")


def runbook_url(slug: str) -> str:
    """The site path of runbook ``slug`` ("" for no slug). Alerts outside the site
    link to pages by this path, so it stays fixed whatever the URLconf says."""
    return f"/runbooks/{slug}/" if slug else ""


# What the rendered Markdown may contain: structure, code, links and tables; no
# scripts, styles, forms, iframes or event handlers, whatever the file says.
ALLOWED_TAGS = {
    "a",
    "blockquote",
    "br",
    "code",
    "dd",
    "dl",
    "dt",
    "em",
    "h2",
    "h3",
    "h4",
    "hr",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "strong",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "h2": {"id"}, "h3": {"id"}}


class RunbookError(ValueError):
    """A runbook file that cannot be served (bad front matter, missing sections)."""


@dataclass(frozen=True)
class Runbook:
    """One runbook page, parsed from its Markdown file."""

    slug: str
    title: str
    severity: str
    alerts: tuple[str, ...]
    reasons: tuple[str, ...]
    aliases: tuple[str, ...]
    body: str

    def __str__(self) -> str:
        return self.title

    @property
    def url(self) -> str:
        return runbook_url(self.slug)

    @functools.cached_property
    def html(self) -> str:
        return render_markdown(self.body)

    @property
    def summary(self) -> str:
        """The first paragraph under Symptoms, as plain text, for the index."""
        after = self.body.split("## Symptoms", 1)[-1].strip()
        first = after.split("\n\n", 1)[0]
        return re.sub(r"[`*_\[\]]|\(/[^)]*\)", "", first).replace("\n", " ").strip()

    def sections(self) -> list[str]:
        return re.findall(r"^## (.+?)\s*$", self.body, re.MULTILINE)

    def matches(self, terms: list[str]) -> bool:
        haystack = " ".join(
            (self.slug, self.title, *self.alerts, *self.reasons, self.body)
        ).lower()
        return all(term in haystack for term in terms)


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to show as is (sanitised by nh3)."""
    html = markdown.markdown(
        text, extensions=["fenced_code", "tables", "toc", "def_list"]
    )
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


def parse(path: Path) -> Runbook:
    """Read one runbook file; RunbookError names the file and what is wrong."""
    text = path.read_text(encoding="utf-8")
    match = FRONT_MATTER.match(text)
    if not match:
        raise RunbookError(f"{path.name}: no front matter between --- lines")
    meta = yaml.safe_load(match.group(1)) or {}
    slug = path.stem
    if not SLUG.match(slug):
        raise RunbookError(f"{path.name}: the file name is not a slug")
    title = meta.get("title")
    severity = meta.get("severity")
    if not isinstance(title, str) or not title:
        raise RunbookError(f"{path.name}: title is required")
    if severity not in SEVERITIES:
        raise RunbookError(f"{path.name}: severity must be one of {SEVERITIES}")
    lists = {}
    for key in ("alerts", "reasons", "aliases"):
        value = meta.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RunbookError(f"{path.name}: {key} must be a list of strings")
        lists[key] = tuple(value)
    runbook = Runbook(
        slug=slug,
        title=title,
        severity=severity,
        alerts=lists["alerts"],
        reasons=lists["reasons"],
        aliases=lists["aliases"],
        body=text[match.end() :],
    )
    missing = [s for s in SECTIONS if s not in runbook.sections()]
    if missing:
        raise RunbookError(f"{path.name}: missing sections {missing}")
    return runbook


@functools.cache
def load(folder: Path = RUNBOOK_DIR) -> dict[str, Runbook]:
    """Every runbook in ``folder`` by slug, sorted by title."""
    pages = sorted(
        (parse(path) for path in folder.glob("*.md")), key=lambda r: r.title.lower()
    )
    return {page.slug: page for page in pages}


@functools.cache
def aliases(folder: Path = RUNBOOK_DIR) -> dict[str, str]:
    """Alternative slug → the page's slug."""
    return {
        alias: page.slug for page in load(folder).values() for alias in page.aliases
    }


def get(slug: str) -> Runbook | None:
    """The page for ``slug`` or one of its aliases; None when there is none."""
    pages = load()
    return pages.get(slug) or pages.get(aliases().get(slug, ""))


def search(query: str) -> list[Runbook]:
    """Pages containing every word of ``query`` (title, alerts, reasons or text),
    those whose title or alerts match first."""
    terms = query.lower().split()
    found = [page for page in load().values() if page.matches(terms)]
    if not terms:
        return found

    def rank(page: Runbook) -> int:
        head = " ".join((page.title, *page.alerts, *page.reasons)).lower()
        return -sum(term in head for term in terms)

    return sorted(found, key=rank)


def for_reason(namespace: str, code: str) -> Runbook | None:
    """The page listing ``namespace:code`` among its reasons."""
    key = f"{namespace}:{code}"
    return next((page for page in load().values() if key in page.reasons), None)


def for_alert(alert: str) -> Runbook | None:
    return next((page for page in load().values() if alert in page.alerts), None)
