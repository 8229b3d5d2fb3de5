"""GitHub's grammar for the names the control plane puts into GitHub API paths.

One place for owner, organization, repository, environment and secret names: model
fields and serializers validate with these (so a bad name is a 400 naming the field),
settings check ``GITHUB_REPOSITORY``/``GITHUB_ORGANIZATION`` with them, and the GitHub
gateway checks every path segment again before it sends anything (defence in depth:
``octocat/Hello-World/../../../orgs/acme`` must never reach a URL).

Where GitHub's own documentation is loose (environment names), the grammar is the
stricter reading: nothing that could be a path segment of its own (``.``, ``..``, a
slash) and no control characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum

from django.core.exceptions import ValidationError


class Kind(StrEnum):
    OWNER = "owner"
    ORGANIZATION = "organization"
    REPOSITORY = "repository"  # owner/name
    REPOSITORY_NAME = "repository name"
    ENVIRONMENT = "environment name"
    SECRET = "secret name"
    WORKFLOW = "workflow file"


# Accounts and organizations: alphanumerics and single hyphens, no hyphen at either
# end, at most 39 characters (GitHub's sign-up rule).
OWNER_RE = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}")
OWNER_MAX = 39
# Repository names: ASCII letters, digits, ".", "-", "_", at most 100 characters;
# GitHub refuses "." and ".." (they are path segments).
REPOSITORY_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
# Secret names: letters, digits and underscores, not starting with a digit or with
# GITHUB_ (case-insensitive, like GitHub's names themselves).
SECRET_NAME_RE = re.compile(r"(?!GITHUB_)[A-Za-z_][A-Za-z0-9_]{0,254}", re.IGNORECASE)
ENVIRONMENT_MAX = 255
# Workflow files live in .github/workflows/; the API takes the file's base name (or
# the workflow's numeric id).
WORKFLOW_RE = re.compile(r"[A-Za-z0-9._-]{1,255}")

_MESSAGES = {
    Kind.OWNER: "letters, digits and single hyphens, at most 39 characters, "
    "not starting or ending with a hyphen",
    Kind.REPOSITORY_NAME: "letters, digits, '.', '-' and '_', at most 100 characters, "
    "not '.' or '..'",
    Kind.ENVIRONMENT: "1 to 255 printable characters, no '/', not '.' or '..'",
    Kind.SECRET: "letters, digits and underscores, at most 255 characters, not "
    "starting with a digit or GITHUB_",
    Kind.WORKFLOW: "a file name in .github/workflows/ (letters, digits, '.', '-', "
    "'_'), not '.' or '..'",
}


def _owner_ok(value: str) -> bool:
    return OWNER_RE.fullmatch(value) is not None and len(value) <= OWNER_MAX


def _repository_name_ok(value: str) -> bool:
    return REPOSITORY_NAME_RE.fullmatch(value) is not None and value not in (".", "..")


def _workflow_ok(value: str) -> bool:
    return WORKFLOW_RE.fullmatch(value) is not None and value not in (".", "..")


def _environment_ok(value: str) -> bool:
    return (
        0 < len(value) <= ENVIRONMENT_MAX
        and value.isprintable()
        and value == value.strip()
        and "/" not in value
        and value not in (".", "..")
    )


def _secret_ok(value: str) -> bool:
    return SECRET_NAME_RE.fullmatch(value) is not None


def problem(kind: Kind, value: object) -> str | None:
    """What is wrong with ``value`` as a GitHub name of this kind, or None."""
    if not isinstance(value, str):
        return f"not a valid GitHub {kind}"
    if kind == Kind.REPOSITORY:
        owner, slash, name = value.partition("/")
        if not slash:
            return "must look like owner/name"
        return problem(Kind.OWNER, owner) or problem(Kind.REPOSITORY_NAME, name)
    checks: dict[Kind, Callable[[str], bool]] = {
        Kind.OWNER: _owner_ok,
        Kind.ORGANIZATION: _owner_ok,
        Kind.REPOSITORY_NAME: _repository_name_ok,
        Kind.ENVIRONMENT: _environment_ok,
        Kind.SECRET: _secret_ok,
        Kind.WORKFLOW: _workflow_ok,
    }
    if checks[kind](value):
        return None
    rule = _MESSAGES[Kind.OWNER if kind == Kind.ORGANIZATION else kind]
    return f"{value!r} is not a valid GitHub {kind}: {rule}"


def is_valid(kind: Kind, value: object) -> bool:
    return problem(kind, value) is None


def _check(kind: Kind, value: object) -> None:
    message = problem(kind, value)
    if message is not None:
        raise ValidationError(message, code="invalid_github_name")


# Django validators for model fields, forms and serializers.
def validate_owner(value: str) -> None:
    _check(Kind.OWNER, value)


def validate_organization(value: str) -> None:
    _check(Kind.ORGANIZATION, value)


def validate_repository(value: str) -> None:
    _check(Kind.REPOSITORY, value)


def validate_environment_name(value: str) -> None:
    _check(Kind.ENVIRONMENT, value)


def validate_secret_name(value: str) -> None:
    _check(Kind.SECRET, value)


def validate_workflow_file(value: str) -> None:
    _check(Kind.WORKFLOW, value)


def validate_secret_names(value: object) -> None:
    """A JSON list of secret names (an environment's required secrets)."""
    if not isinstance(value, list):
        raise ValidationError("must be a list of secret names")
    for item in value:
        _check(Kind.SECRET, item)
