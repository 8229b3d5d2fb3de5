"""An environment's deploy rules: promotion from another environment and allowed
refs. :func:`check` says why a ref and SHA may not go to an environment; the deploy
request (``deploys.triggers``), the gate (``deploys.engine.gate``) and GitHub's
deployment protection rule for runs started elsewhere all ask it.

- **Promotion** (``promote_from``, ``promotion_period_hours``): the exact SHA must
  have succeeded in the source environment within the period counted back from the
  request, or have succeeded in this environment before (a redeploy or a rollback
  repeats a commit that was promoted when it first went out). Database only.
- **Allowed refs** (``allowed_refs``): fnmatch globs over full ref names
  (``refs/tags/v*``). A short name (``v1.2.3``) stands for the branch and the tag of
  that name: at least one that exists must match and none that exists may fail to
  (a branch named like a release tag does not slip through). Up to two GitHub calls
  (``GET /git/ref/...``), made only when the environment has the rule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlencode

from django.db.models import Max
from django.urls import reverse

from controlplane.github import GitHubError, gateway_for
from deploys.commits import CommitLookupError
from deploys.models import DeployEvent, DeployRun, Environment
from deploys.models.rules_fields import ref_patterns

NOT_PROMOTED = "not_promoted"
REF_NOT_ALLOWED = "ref_not_allowed"
RULE_NAMES = {"promote_from": "promotion rule", "allowed_refs": "allowed-refs rule"}


@dataclass(frozen=True)
class Refusal:
    """Why one rule refuses a ref or SHA on an environment."""

    # ``not_promoted`` or ``ref_not_allowed``.
    code: str
    # The environment field holding the rule (``promote_from``, ``allowed_refs``).
    rule: str
    # The request field it is about (``sha``, ``ref``).
    field: str
    message: str
    # Not promoted: where to deploy the commit first (environment, ref, sha).
    promote: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        """The rule in words ("promotion rule")."""
        return RULE_NAMES.get(self.rule, self.rule)

    def detail(self) -> dict[str, Any]:
        """The facts for an API body, an event or a protection rule's comment."""
        facts: dict[str, Any] = {"code": self.code, "rule": self.rule}
        if self.promote:
            facts["promote"] = {**self.promote, "form_url": offer_url(self.promote)}
        return facts


def check(environment: Environment, ref: str, sha: str, now: datetime) -> list[Refusal]:
    """Why ``ref`` at ``sha`` may not be deployed to ``environment`` at ``now``
    under its rules (empty: the rules allow it).

    ``ref`` is a short name (``main``, ``v1.2.3``) or a full one (``refs/tags/v1``);
    ``sha`` the full commit SHA. Raises :class:`CommitLookupError` (``unavailable``)
    when GitHub does not answer about the ref: neither allowed nor refused."""
    refusals = []
    refused_ref = ref_refusal(environment, ref)
    if refused_ref is not None:
        refusals.append(refused_ref)
    refused_sha = promotion_refusal(environment, ref, sha, now)
    if refused_sha is not None:
        refusals.append(refused_sha)
    return refusals


# Promotion ------------------------------------------------------------------------------


def period_text(hours: int) -> str:
    if hours % 24 == 0:
        days = hours // 24
        return "1 day" if days == 1 else f"{days} days"
    return "1 hour" if hours == 1 else f"{hours} hours"


def promotion_refusal(
    env: Environment, ref: str, sha: str, requested_at: datetime
) -> Refusal | None:
    """The promotion rule's refusal of ``sha``, or None (no rule, or promoted).

    One query: the latest success of the SHA here and in the source environment."""
    source = env.promote_from
    if source is None:
        return None
    period = timedelta(hours=env.promotion_period_hours)
    last = dict(
        DeployRun.objects.filter(
            sha=sha,
            state=DeployRun.State.SUCCEEDED,
            environment_id__in=[env.pk, source.pk],
        )
        .exclude(sha="")
        .values_list("environment_id")
        .annotate(last=Max("finished_at"))
        .order_by()
    )
    if env.pk in last:
        return None  # it went out here before: a redeploy or a rollback
    there = last.get(source.pk)
    if there is not None and there >= requested_at - period:
        return None
    within = period_text(env.promotion_period_hours)
    rule = (
        f"{env.name} deploys only commits that succeeded in {source.name} within "
        f"{within}"
    )
    if not sha:  # a caller that knows no commit: nothing to promote
        return Refusal(
            NOT_PROMOTED, "promote_from", "sha", f"{rule}, and no commit was given."
        )
    if there is None:
        why = f"it has not succeeded in {source.name}"
    else:
        why = (
            f"it last succeeded in {source.name} at {there:%Y-%m-%d %H:%M} UTC, "
            f"more than {within} before"
        )
    return Refusal(
        NOT_PROMOTED,
        "promote_from",
        "sha",
        f"{sha[:12]} ({ref}) is not promoted to {env.name}: {rule}, and {why}. "
        f"Deploy it to {source.name} first (environment {source.name}, ref {ref}, "
        f"sha {sha}).",
        promote={"environment": source.name, "ref": ref, "sha": sha},
    )


def offer_url(promote: dict[str, str]) -> str:
    """The deploy form filled in to deploy the same ref and commit to the source."""
    return f"{reverse('deploys:run-new')}?{urlencode(promote)}"


def gate_refusal(run: DeployRun) -> Refusal | None:
    """The promotion rule at the gate, for a run about to be dispatched the first
    time: the rule as it is now (an admin may have set it after the request), the
    period counted from the request (a wait in the queue does not age it out).

    None without a rule, for a run back at the gate for a failover (it is already
    deploying), and for a run an admin broke glass for past this rule."""
    env = run.environment
    if env.promote_from_id is None or run.attempts.exists():
        return None
    glass = run.events.filter(kind=DeployEvent.Kind.BREAK_GLASS).values_list(
        "detail", flat=True
    )
    if any(NOT_PROMOTED in (detail or {}).get("rules", ()) for detail in glass):
        return None
    return promotion_refusal(env, run.ref, run.sha, run.created_at)


# Allowed refs ---------------------------------------------------------------------------


def ref_refusal(env: Environment, ref: str) -> Refusal | None:
    """The allowed-refs rule's refusal of ``ref``, or None (no rule, or allowed).

    No GitHub call when neither the branch nor the tag of that name could match."""
    patterns = ref_patterns(env.allowed_refs)
    if not patterns:
        return None
    rule = " ".join(patterns)
    full = ref.startswith("refs/")
    candidates = [ref] if full else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    matching = [c for c in candidates if any(fnmatchcase(c, p) for p in patterns)]

    def refuse(why: str) -> Refusal:
        return Refusal(
            REF_NOT_ALLOWED,
            "allowed_refs",
            "ref",
            f"{env.name} deploys only refs matching {rule} (its allowed_refs rule): "
            f"{why}.",
        )

    if not matching:
        return refuse(
            f"{ref} does not match"
            if full
            else f"neither the branch nor a tag named {ref} would match"
        )
    exists = _existing(env, candidates)
    for other in candidates:
        if other not in matching and other in exists:
            return refuse(
                f"{ref} is also {_kind(other)} ({other}), which does not match; "
                f"ask for {matching[0]} to deploy the {_kind(matching[0])[2:]}"
            )
    if not any(c in exists for c in matching):
        return refuse(
            f"{' or '.join(matching)} is not a branch or tag of {env.repository}"
        )
    return None


def _kind(full_ref: str) -> str:
    return "a branch" if full_ref.startswith("refs/heads/") else "a tag"


def _existing(env: Environment, candidates: list[str]) -> set[str]:
    """Which of the full refs exist on GitHub now (one call each)."""
    found = set()
    gateway = gateway_for(env.repository)
    for candidate in candidates:
        try:
            if gateway.git_ref_sha(candidate) is not None:
                found.add(candidate)
        except GitHubError as exc:
            raise CommitLookupError(
                f"GitHub did not answer when looking up {candidate} ({exc}); "
                "nothing was created, try again shortly",
                field="ref",
                unavailable=True,
            ) from None
    return found
