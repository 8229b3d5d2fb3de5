"""Webhooks: the configured hooks, their delivery logs and redelivery."""

from __future__ import annotations

from typing import Any

from controlplane import names
from controlplane.github.core import PER_PAGE, GatewayCore
from controlplane.github.errors import GitHubValidationError
from controlplane.github.paths import next_cursor, segment
from controlplane.github.types import (
    HookDeliveriesPage,
    HookDeliveryInfo,
    HookInfo,
    HookScope,
    parse_time,
)


class HookCalls(GatewayCore):
    def hooks_url(self, scope: HookScope) -> str:
        if scope == "organization":
            if not self.organization:
                raise GitHubValidationError("no GitHub organization is configured")
            return f"/orgs/{segment(names.Kind.ORGANIZATION, self.organization)}/hooks"
        return f"{self._repo_url}/hooks"

    def list_hooks(self, scope: HookScope) -> list[HookInfo]:
        """The repository's or organization's webhooks (needs admin:*_hook read)."""
        hooks: list[HookInfo] = []
        for page in range(1, 11):
            data = self._get(
                "list_hooks",
                self.hooks_url(scope),
                {"per_page": PER_PAGE, "page": page},
            )
            for item in data or ():
                config = item.get("config") or {}
                hooks.append(
                    HookInfo(
                        id=int(item["id"]),
                        url=str(config.get("url") or ""),
                        active=bool(item.get("active")),
                        events=tuple(str(e) for e in item.get("events") or ()),
                    )
                )
            if len(data or ()) < PER_PAGE:
                break
        return hooks

    def list_hook_deliveries(
        self, scope: HookScope, hook_id: int, *, cursor: str | None = None
    ) -> HookDeliveriesPage:
        """One page of the hook's delivery log, newest first (cursor pagination)."""
        url = f"{self.hooks_url(scope)}/{hook_id}/deliveries"
        params: dict[str, Any] = {"per_page": PER_PAGE}
        if cursor:
            params["cursor"] = cursor
        with self._call("list_hook_deliveries"):
            headers, data = self._requester.requestJsonAndCheck("GET", url, params)
        deliveries = [
            HookDeliveryInfo(
                id=int(item["id"]),
                guid=str(item.get("guid") or ""),
                event=str(item.get("event") or ""),
                action=item.get("action"),
                status_code=int(item.get("status_code") or 0),
                status=str(item.get("status") or ""),
                redelivery=bool(item.get("redelivery")),
                delivered_at=parse_time(item.get("delivered_at")),
            )
            for item in data or ()
        ]
        return HookDeliveriesPage(deliveries, next_cursor(headers.get("link")))

    def redeliver_hook_delivery(
        self, scope: HookScope, hook_id: int, delivery_id: int
    ) -> None:
        """Ask GitHub to send a logged delivery again (202; same guid, same payload)."""
        url = f"{self.hooks_url(scope)}/{hook_id}/deliveries/{delivery_id}/attempts"
        self._post("redeliver_hook_delivery", url)
