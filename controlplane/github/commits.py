"""Commits: the exact SHA a branch or tag stands for right now.

``workflow_dispatch`` takes a branch or tag, never a SHA; to deploy one exact commit
the control plane resolves the ref first (``GET /repos/{o}/{r}/commits/{ref}``), passes
the SHA as an input and compares it with the run's ``head_sha``.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from datetime import datetime

from controlplane import names
from controlplane.github.core import GatewayCore
from controlplane.github.errors import GitHubNotFound, GitHubValidationError
from controlplane.github.types import parse_time

FULL_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class CommitInfo:
    """A commit as a deploy records it."""

    sha: str
    html_url: str
    message: str
    # When it was committed (the committer's date; lead time for changes starts here).
    committed_at: datetime | None = None


def is_full_sha(value: str) -> bool:
    return bool(FULL_SHA_RE.match(value))


class CommitCalls(GatewayCore):
    def get_commit(self, ref: str) -> CommitInfo:
        """The commit ``ref`` (a branch, tag or SHA) stands for now.

        GitHub answers an unknown ref with 422 "No commit found for SHA: ..."
        (:class:`GitHubValidationError`) and an unknown repository with 404.
        Conditional: while the ref has not moved GitHub answers 304, which costs no
        API budget (every deploy request resolves its ref)."""
        message = names.problem(names.Kind.GIT_REF, ref)
        if message is not None:
            raise GitHubValidationError(f"refusing to call GitHub: {message}")
        # Slashes stay: GitHub reads "commits/feature/x" as the branch feature/x.
        path = urllib.parse.quote(ref, safe="/")
        data = self._get(
            "get_commit", f"{self._repo_url}/commits/{path}", conditional=True
        )
        commit = data.get("commit") or {}
        return CommitInfo(
            sha=str(data["sha"]),
            html_url=str(data.get("html_url") or ""),
            message=str(commit.get("message") or ""),
            committed_at=parse_time((commit.get("committer") or {}).get("date"))
            or parse_time((commit.get("author") or {}).get("date")),
        )

    def git_ref_sha(self, ref: str) -> str | None:
        """The SHA the full ref ``refs/heads/x`` or ``refs/tags/x`` points at (for an
        annotated tag, the tag object's), or None when no such branch or tag exists
        (GitHub's 404: ``GET /git/ref/{ref}`` matches exactly)."""
        name = ref.removeprefix("refs/")
        message = names.problem(names.Kind.GIT_REF, name)
        if message is not None or not name.startswith(("heads/", "tags/")):
            raise GitHubValidationError(f"refusing to call GitHub: {message or ref}")
        path = urllib.parse.quote(name, safe="/")
        try:
            data = self._get("git_ref_sha", f"{self._repo_url}/git/ref/{path}")
        except GitHubNotFound:
            return None
        return str((data.get("object") or {}).get("sha") or "")
