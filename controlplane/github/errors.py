"""The gateway's typed errors. Messages never contain a token or a secret value."""

from __future__ import annotations


class GitHubError(Exception):
    """A GitHub call failed. The message never contains a token or a secret value."""

    def __init__(
        self, message: str, *, status: int | None = None, github_message: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.github_message = github_message


class GitHubNotFound(GitHubError):
    """GitHub answered 404: the object does not exist or the token may not see it."""


class GitHubValidationError(GitHubError):
    """GitHub refused the request as invalid (400/422); ``github_message`` says why."""


class GitHubInputsRefused(GitHubValidationError):
    """GitHub refused a workflow dispatch's inputs (422) and created no run.

    ``unexpected``: inputs sent that the workflow file does not declare;
    ``missing``: a required input (without a default) that was not sent.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        github_message: str = "",
        unexpected: tuple[str, ...] = (),
        missing: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, status=status, github_message=github_message)
        self.unexpected = unexpected
        self.missing = missing


class GitHubAuthError(GitHubError):
    """The credentials were refused (401) or lack a permission (403)."""


class GitHubConflict(GitHubError):
    """GitHub answered 409, e.g. cancelling a run that already completed."""


class GitHubUnavailable(GitHubError):
    """GitHub kept failing (5xx, timeouts, connection errors) after every retry."""


class GitHubAmbiguousWrite(GitHubError):
    """A non-idempotent write failed in a way that may still have taken effect.

    Not retried, so it is never sent twice; look the result up (a dispatched run by its
    correlation token) before deciding to send it again.
    """


class GitHubRateLimited(GitHubError):
    """The rate limit would have to be waited out for longer than allowed."""

    def __init__(self, message: str, *, wait_seconds: float, status: int) -> None:
        super().__init__(message, status=status)
        self.wait_seconds = wait_seconds
