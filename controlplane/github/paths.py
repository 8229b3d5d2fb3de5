"""URL building from names checked against GitHub's grammar, and Link-header reading."""

from __future__ import annotations

import urllib.parse

from controlplane import names
from controlplane.github.errors import GitHubValidationError


def segment(kind: names.Kind, value: str) -> str:
    """``value`` as one URL path segment, after checking it against GitHub's grammar
    for its kind. Callers validate names already; this is the last line, so a name
    that would steer the request elsewhere (``../../orgs/x``) never reaches HTTP."""
    message = names.problem(kind, value)
    if message is not None:
        raise GitHubValidationError(f"refusing to call GitHub: {message}")
    return urllib.parse.quote(value, safe="")


def repository_path(repository: str) -> str:
    """``owner/name`` as two checked, quoted path segments."""
    message = names.problem(names.Kind.REPOSITORY, repository)
    if message is not None:
        raise GitHubValidationError(f"refusing to call GitHub: {message}")
    owner, _, name = repository.partition("/")
    return (
        f"{segment(names.Kind.OWNER, owner)}/"
        f"{segment(names.Kind.REPOSITORY_NAME, name)}"
    )


def last_page(link: str | None) -> int | None:
    """The ``page`` of the ``rel="last"`` URL in a ``Link`` header."""
    if not link:
        return None
    for part in link.split(","):
        if 'rel="last"' in part:
            url = part.split(";")[0].strip().strip("<>")
            pages = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("page")
            if pages and pages[0].isdigit():
                return int(pages[0])
    return None


def next_cursor(link: str | None) -> str | None:
    """The ``cursor`` of the ``rel="next"`` URL in a ``Link`` header."""
    for part in (link or "").split(","):
        if 'rel="next"' in part:
            url = part.split(";")[0].strip().strip("<>")
            cursors = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get(
                "cursor"
            )
            if cursors:
                return cursors[0]
    return None
