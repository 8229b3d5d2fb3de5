"""Request ids for logs and audit rows (see ``request_id``), and session lifetime
limits."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from controlplane import audit, request_id

# Accept a caller's id only when it is short and harmless to log.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Takes ``X-Request-ID`` from the caller (or makes one) and echoes it back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        current = given if _VALID_REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id.bind(current)
        try:
            response = self.get_response(request)
        finally:
            request_id.unbind(token)
        response["X-Request-ID"] = current
        return response


class SessionLimitsMiddleware:
    """Ends a UI session after ``SESSION_IDLE_TIMEOUT`` idle seconds, and 12 hours
    after login whatever the activity (``SESSION_COOKIE_AGE``)."""

    # Write the last-seen time at most this often, not on every request.
    TOUCH_EVERY = 60

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated and hasattr(request, "session"):
            now = time.time()
            session = request.session
            started = session.setdefault("started_at", now)
            last_seen = session.get("last_seen", now)
            idle = now - last_seen > settings.SESSION_IDLE_TIMEOUT
            if idle or now - started > settings.SESSION_COOKIE_AGE:
                audit.record(
                    request.user,
                    "session.expire",
                    limit="idle" if idle else "absolute",
                )
                logout(request)
            elif now - last_seen >= self.TOUCH_EVERY or "last_seen" not in session:
                session["last_seen"] = now
        return self.get_response(request)
