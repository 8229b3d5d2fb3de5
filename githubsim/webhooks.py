"""Signed webhook deliveries from a background sender, like GitHub's hookshot."""

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


class WebhookSender:
    """Delivers queued events one at a time; failures are counted, never retried."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
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
        self._queue.put((event, payload))

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

    def _deliver(self, event: str, payload: dict[str, Any]) -> None:
        config = self.state.config
        url, secret = config.webhook_url, config.webhook_secret
        if not url:
            return
        body = json.dumps(payload).encode()
        delivery = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Hook-ID": str(HOOK_ID),
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-GitHub-Hook-Installation-Target-ID": str(
                payload.get("repository", {}).get("id", 0)
            ),
        }
        if secret:
            headers["X-Hub-Signature-256"] = signature(secret, body)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        status = 0
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError):
            status = 0
        ok = 200 <= status < 300
        with self.state.lock:
            if ok:
                self.state.webhooks_sent += 1
            else:
                self.state.webhooks_failed += 1
        self._recent.append(
            {
                "delivery": delivery,
                "event": event,
                "action": payload.get("action"),
                "status": status,
            }
        )
