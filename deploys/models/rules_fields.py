"""An environment's deploy rules: promotion from another environment and the refs
that may be deployed (the fields; ``deploys.rules`` applies them)."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

# What a pattern may name: the full ref of a branch or a tag.
REF_PREFIXES = ("refs/heads/", "refs/tags/")
# Ref characters plus fnmatch's wildcards (* ? [seq] [!seq]).
PATTERN_RE = re.compile(r"^[A-Za-z0-9._/+*?\[\]!-]{1,255}$")
MAX_PATTERNS = 20
MAX_PROMOTION_HOURS = 24 * 366
# How far ``promote_from`` is followed when looking for a cycle.
MAX_CHAIN = 50

ALLOWED_REFS_HELP = (
    "Refs that may be deployed here: fnmatch-style globs over full ref names, "
    "separated by spaces or commas, e.g. 'refs/tags/v*' (release tags only) or "
    "'refs/heads/main refs/tags/v*'. Each starts with refs/heads/ (branches) or "
    "refs/tags/ (tags); * matches any characters, '/' included, ? one character, "
    "[abc] one of a set. A request for a short name (v1.2.3) is allowed when the "
    "branch or tag it names matches and no branch or tag of that name that does not "
    "match exists. Empty: any branch or tag."
)


def ref_patterns(value: str) -> list[str]:
    """The patterns of an ``allowed_refs`` value, in order."""
    return [p for p in re.split(r"[\s,]+", value.strip()) if p]


def validate_ref_patterns(value: str) -> None:
    """Each pattern a glob over ``refs/heads/…`` or ``refs/tags/…`` (the admin's
    and the API's 400 say which one is wrong and why)."""
    patterns = ref_patterns(value)
    if len(patterns) > MAX_PATTERNS:
        raise ValidationError(f"at most {MAX_PATTERNS} patterns")
    for pattern in patterns:
        if not pattern.startswith(REF_PREFIXES):
            raise ValidationError(
                f"{pattern!r} must start with refs/heads/ (branches) or refs/tags/ "
                f"(tags), e.g. refs/tags/{pattern.rsplit('/', 1)[-1] or 'v*'}"
            )
        if pattern in REF_PREFIXES:
            raise ValidationError(f"{pattern!r} names no branch or tag: add e.g. *")
        if not PATTERN_RE.match(pattern) or ".." in pattern or "//" in pattern:
            raise ValidationError(
                f"{pattern!r} is not a ref pattern: letters, digits, '.', '_', '/', "
                "'+', '-' and the wildcards * ? [ ] !, no '..' or '//'"
            )
        if pattern.count("[") != pattern.count("]"):
            raise ValidationError(f"{pattern!r} has an unclosed [ ] set")


class DeployRulesFields(models.Model):
    """The promotion and allowed-refs rules of an environment (abstract)."""

    # A commit may be deployed here only once it has succeeded there (PROTECT: a
    # source environment is never removed from under the rule, opening it).
    promote_from = models.ForeignKey(
        "deploys.Environment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="promotes_to",
        help_text="Promotion: a commit may be deployed here only after the same "
        "commit (its exact SHA) succeeded in this environment within the promotion "
        "period, e.g. production after staging. A commit that already succeeded "
        "here counts too (a redeploy, a rollback). Empty: no promotion rule.",
    )
    promotion_period_hours = models.PositiveIntegerField(
        default=168,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_PROMOTION_HOURS)],
        help_text="Promotion: how recent (hours) the success in the environment "
        "above must be, counted back from the deploy request.",
    )
    allowed_refs = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_ref_patterns],
        help_text=ALLOWED_REFS_HELP,
    )

    class Meta:
        abstract = True

    def clean(self) -> None:
        """The admin site's check of the promotion source (the API's is the same)."""
        super().clean()
        problem = promotion_source_problem(self, self.promote_from)
        if problem:
            raise ValidationError({"promote_from": problem})


def promotion_source_problem(env: Any, source: Any) -> str:
    """Why ``source`` cannot be the environment ``env`` promotes from ("" when it
    can): itself, another repository, or a loop of promotions (nothing could ever
    be deployed to any of them)."""
    if source is None:
        return ""
    if env.pk is not None and source.pk == env.pk:
        return "an environment cannot promote from itself"
    if env.repository and source.repository != env.repository:
        return (
            f"{source.name} deploys {source.repository}, not {env.repository}: "
            "promotion compares commits of one repository"
        )
    seen = {source.pk}
    current = source
    for _ in range(MAX_CHAIN):
        current = current.promote_from
        if current is None:
            return ""
        if env.pk is not None and current.pk == env.pk:
            return (
                f"{source.name} promotes (through its chain) from this environment: "
                "a loop would let nothing be deployed"
            )
        if current.pk in seen:
            return ""
        seen.add(current.pk)
    return ""
