"""GitHub's grammar for the names the control plane puts into GitHub API paths.

One place for owner, organization, repository, environment and secret names: model
fields and serializers validate with these (so a bad name is a 400 naming the field),
settings check ``GITHUB_REPOSITORY``/``GITHUB_ORGANIZATION`` with them, and the GitHub
gateway checks every path segment again before it sends anything (defence in depth:
``octocat/Hello-World/../../../orgs/acme`` must never reach a URL).

Each grammar is one regular expression, written in the subset that Python and
ECMA-262 (JSON Schema's ``pattern``) read alike, so the OpenAPI schema documents
exactly what the code accepts. Where GitHub is loose (environment names) or needs
more than a plain pattern (single hyphens in account names), the grammar is the
stricter or simpler reading that still has no path segment of its own (``.``,
``..``, a slash) and no control characters.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.deconstruct import deconstructible


class Kind(StrEnum):
    OWNER = "owner"
    ORGANIZATION = "organization"
    REPOSITORY = "repository"  # owner/name
    REPOSITORY_NAME = "repository name"
    ENVIRONMENT = "environment name"
    SECRET = "secret name"
    WORKFLOW = "workflow file"
    GIT_REF = "branch, tag or commit"


# Accounts and organizations: letters, digits and hyphens, no hyphen at either end,
# at most 39 characters.
_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?"
# Repository names: letters, digits, ".", "-", "_", at most 100; GitHub refuses "."
# and ".." (they are path segments).
_REPOSITORY_NAME = r"(?!\.\.?$)[A-Za-z0-9._-]{1,100}"
PATTERNS: dict[Kind, str] = {
    Kind.OWNER: _OWNER,
    Kind.ORGANIZATION: _OWNER,
    Kind.REPOSITORY: f"{_OWNER}/{_REPOSITORY_NAME}",
    Kind.REPOSITORY_NAME: _REPOSITORY_NAME,
    # Printable ASCII without "/", no space at either end, not "." or "..".
    Kind.ENVIRONMENT: r"(?!\.\.?$)[!-.0-~](?:[ -.0-~]{0,253}[!-.0-~])?",
    # Letters, digits, underscores; not a digit first, not GITHUB_ in any case.
    Kind.SECRET: r"(?![Gg][Ii][Tt][Hh][Uu][Bb]_)[A-Za-z_][A-Za-z0-9_]{0,254}",
    # A file in .github/workflows/ (the API also takes the workflow's numeric id).
    Kind.WORKFLOW: r"(?!\.\.?$)[A-Za-z0-9._-]{1,255}",
    # Branch, tag or commit names as git allows them, minus the exotic corners.
    Kind.GIT_REF: r"(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/+-]{1,255}(?<![./])",
}
_COMPILED = {kind: re.compile(pattern) for kind, pattern in PATTERNS.items()}

_RULES = {
    Kind.OWNER: "letters, digits and hyphens, at most 39 characters, not starting "
    "or ending with a hyphen",
    Kind.ORGANIZATION: "letters, digits and hyphens, at most 39 characters, not "
    "starting or ending with a hyphen",
    Kind.REPOSITORY: "owner/name: the owner letters, digits and hyphens (at most 39), "
    "the name letters, digits, '.', '-' and '_' (at most 100, not '.' or '..')",
    Kind.REPOSITORY_NAME: "letters, digits, '.', '-' and '_', at most 100 "
    "characters, not '.' or '..'",
    Kind.ENVIRONMENT: "1 to 255 printable ASCII characters, no '/', no space at "
    "either end, not '.' or '..'",
    Kind.SECRET: "letters, digits and underscores, at most 255 characters, not "
    "starting with a digit or GITHUB_",
    Kind.WORKFLOW: "a file name in .github/workflows/ (letters, digits, '.', '-', "
    "'_'), not '.' or '..'",
    Kind.GIT_REF: "letters, digits, '.', '_', '/', '+' and '-', at most 255 "
    "characters, no '..' or '//', not starting with '-' nor ending with '.' or '/'",
}


def problem(kind: Kind, value: object) -> str | None:
    """What is wrong with ``value`` as a GitHub name of this kind, or None."""
    # fullmatch, not "$": in Python "$" also matches before a final newline.
    if isinstance(value, str) and _COMPILED[kind].fullmatch(value):
        return None
    return f"{value!r} is not a valid GitHub {kind}: {_RULES[kind]}"


@deconstructible
class NameValidator(RegexValidator):
    """Django validator for one kind of GitHub name. A ``RegexValidator``, so
    drf-spectacular documents its pattern in the OpenAPI schema."""

    code = "invalid_github_name"

    def __init__(self, kind: str) -> None:
        self.kind = Kind(kind)
        # \A and \Z: drf-spectacular writes them as ECMA's ^ and $.
        super().__init__(rf"\A(?:{PATTERNS[self.kind]})\Z", code=self.code)

    def __call__(self, value: Any) -> None:
        message = problem(self.kind, value)
        if message is not None:
            raise ValidationError(message, code=self.code)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NameValidator) and other.kind == self.kind

    def __hash__(self) -> int:
        return hash(self.kind)


validate_repository = NameValidator(Kind.REPOSITORY.value)
validate_secret_name = NameValidator(Kind.SECRET.value)
validate_workflow_file = NameValidator(Kind.WORKFLOW.value)
validate_environment_name = NameValidator(Kind.ENVIRONMENT.value)


def validate_secret_names(value: object) -> None:
    """A JSON list of secret names (an environment's required secrets)."""
    if not isinstance(value, list):
        raise ValidationError("must be a list of secret names")
    for item in value:
        validate_secret_name(item)
