"""Signed webhook deliveries from a background sender, like GitHub's hookshot.

Every attempt, successful or not, is logged in the state's delivery log (served by
the hook deliveries API). Nothing is retried by itself: like GitHub, a failed
delivery is sent again only when a client asks for a redelivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from typing import Any

from githubsim.state import SimState

HOOK_ID = 4_000_001
USER_AGENT = "GitHub-Hookshot/githubsim"
TIMEOUT = 10.0


def signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256``: ``sha256=`` and the hex HMAC of the raw body."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


# One queued delivery: event, payload, guid (None: a new one), whether a redelivery.
Outgoing = tuple[str, dict[str, Any], str | None, bool]


def _status_text(status: int) -> str:
    """The ``status`` GitHub's delivery log shows next to the status code."""
    if status == 0:
        return "failed to connect to host"
    if 200 <= status < 300:
        return "OK"
    return f"Invalid HTTP Response: {status}"


class WebhookSender:
    """Delivers queued events one at a time; failures are logged, never retried."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self._queue: queue.Queue[Outgoing | None] = queue.Queue()
        self._recent: deque[dict[str, Any]] = deque(maxlen=200)
        self._thread = threading.Thread(
            target=self._loop, name="githubsim-webhooks", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=TIMEOUT + 1)

    def enqueue(self, event: str, payload: dict[str, Any]) -> None:
        if not self.state.config.webhook_url:
            return
        self._queue.put((event, payload, None, False))

    def redeliver(self, record: dict[str, Any]) -> None:
        """Send a logged delivery again: same event, payload and guid."""
        self._queue.put((record["event"], record["payload"], record["guid"], True))

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait (real seconds) until every queued event has been attempted."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def recent(self) -> list[dict[str, Any]]:
        return list(self._recent)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(*item)
            finally:
                self._queue.task_done()

    def _deliver(
        self,
        event: str,
        payload: dict[str, Any],
        guid: str | None,
        redelivery: bool,
    ) -> None:
        config = self.state.config
        url, secret = config.webhook_url, config.webhook_secret
        if not url:
            return
        body = json.dumps(payload).encode()
        delivery = guid or str(uuid.uuid4())
        target_type = config.webhook_scope
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Hook-ID": str(HOOK_ID),
            "X-GitHub-Hook-Installation-Target-Type": target_type,
            "X-GitHub-Hook-Installation-Target-ID": str(
                payload.get("repository", {}).get("id", 0)
            ),
        }
        if secret:
            headers["X-Hub-Signature-256"] = signature(secret, body)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        status = 0
        response_headers: dict[str, str] = {}
        response_body = ""
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                status = response.status
                response_headers = dict(response.headers.items())
                response_body = response.read(4096).decode(errors="replace")
        except urllib.error.HTTPError as exc:
            status = exc.code
            response_headers = dict(exc.headers.items())
            response_body = exc.read(4096).decode(errors="replace")
        except (OSError, ValueError):
            status = 0
        ok = 200 <= status < 300
        with self.state.lock:
            if ok:
                self.state.webhooks_sent += 1
            else:
                self.state.webhooks_failed += 1
        self.state.log_delivery(
            guid=delivery,
            event=event,
            payload=payload,
            redelivery=redelivery,
            status_code=status,
            status=_status_text(status),
            duration=round(time.monotonic() - started, 3),
            request_headers=headers,
            response_headers=response_headers,
            response_body=response_body,
        )
        self._recent.append(
            {
                "delivery": delivery,
                "event": event,
                "action": payload.get("action"),
                "status": status,
                "redelivery": redelivery,
            }
        )
