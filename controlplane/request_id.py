"""The current request's id: set by ``RequestIdMiddleware``, read by log records and
audit rows. A module of its own so that anything may read it without importing the
middleware (which itself writes audit rows)."""

from __future__ import annotations

import contextvars
import logging

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "request_id", default="-"
)


def current_request_id() -> str:
    return _request_id.get()


def bind(request_id: str) -> contextvars.Token[str]:
    """Make ``request_id`` current; pass the token to ``unbind`` when done."""
    return _request_id.set(request_id)


def unbind(token: contextvars.Token[str]) -> None:
    _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True
