"""The repository or organization webhook: where it is installed and its delivery log."""

from __future__ import annotations

from typing import Any

from githubsim.errors import not_found
from githubsim.state.core import StateCore

# The delivery log keeps this many entries (GitHub keeps a few days' worth).
MAX_LOGGED_DELIVERIES = 20_000


class HooksMixin(StateCore):
    """Delivery records, oldest first, and the sender's success and failure counts."""

    def _reset_hooks(self) -> None:
        self.webhooks_sent = 0
        self.webhooks_failed = 0
        # The hook's delivery log, oldest first (dicts keep insertion order).
        self._deliveries: dict[int, dict[str, Any]] = {}
        self._next_delivery_id = 30_000_001

    def hook_owner(self, scope: str) -> str:
        """The repository or organization the simulated webhook is installed on."""
        repo = self.default_repository
        return repo if scope == "repository" else repo.split("/", 1)[0]

    def log_delivery(
        self,
        *,
        guid: str,
        event: str,
        payload: dict[str, Any],
        redelivery: bool,
        status_code: int,
        status: str,
        duration: float,
        request_headers: dict[str, str],
        response_headers: dict[str, str],
        response_body: str,
    ) -> dict[str, Any]:
        with self.lock:
            delivery_id = self._next_delivery_id
            record: dict[str, Any] = {
                "id": delivery_id,
                "guid": guid,
                "event": event,
                "action": payload.get("action"),
                "payload": payload,
                "redelivery": redelivery,
                "status_code": status_code,
                "status": status,
                "duration": duration,
                "delivered_at": self.clock.now(),
                "repository_id": (payload.get("repository") or {}).get("id"),
                "request_headers": request_headers,
                "response_headers": response_headers,
                "response_body": response_body,
            }
            self._next_delivery_id += 1
            self._deliveries[delivery_id] = record
            if len(self._deliveries) > MAX_LOGGED_DELIVERIES:
                del self._deliveries[next(iter(self._deliveries))]
            return record

    def deliveries(self) -> list[dict[str, Any]]:
        """The delivery log, newest first."""
        with self.lock:
            return list(reversed(self._deliveries.values()))

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        with self.lock:
            record = self._deliveries.get(delivery_id)
            if record is None:
                raise not_found()
            return record
