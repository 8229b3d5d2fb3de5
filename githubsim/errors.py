"""The error the simulator's state raises; the server turns it into GitHub's error JSON."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refusal with an HTTP status, answered as ``{"message", "documentation_url"}``."""

    def __init__(
        self, status: int, message: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def invalid(message: str, field: str, code: str = "invalid") -> ApiError:
    return ApiError(
        422, message, [{"resource": "Request", "field": field, "code": code}]
    )
