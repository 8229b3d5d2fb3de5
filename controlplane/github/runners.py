"""Self-hosted runners: the conditional (ETag) runner list, single runners and the
runner application downloads."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from github.Requester import Requester

from controlplane.github.core import PER_PAGE, GatewayCore
from controlplane.github.paths import last_page as link_last_page
from controlplane.github.types import RunnerApplication, RunnerInfo, RunnersPage


def parse_runner(data: Mapping[str, Any]) -> RunnerInfo:
    return RunnerInfo(
        id=int(data["id"]),
        name=str(data["name"]),
        os=str(data.get("os") or ""),
        status=str(data.get("status") or ""),
        busy=bool(data.get("busy")),
        labels=tuple(str(label["name"]) for label in data.get("labels") or ()),
        version=str(data.get("version") or ""),
    )


class RunnerCalls(GatewayCore):
    @property
    def runners_url(self) -> str:
        return f"{self._org_url or self._repo_url}/actions/runners"

    def list_runners_page(
        self, page: int = 1, *, etag: str | None = None
    ) -> RunnersPage:
        """One page (100 runners) of the runner list, conditional on ``etag``.

        A 304 answer means the page is unchanged and costs no API budget; it carries
        no runners, no ``last_page`` and no total, so keep the previous page's.
        """
        headers = {"If-None-Match": etag} if etag else {}
        with self._call("list_runners_page"):
            status, response_headers, body = self._requester.requestJson(
                "GET",
                self.runners_url,
                {"per_page": PER_PAGE, "page": page},
                headers=headers,
            )
            data = json.loads(body) if body else None
            if status >= 400:
                raise Requester.createException(status, response_headers, data or {})
        last_page = link_last_page(response_headers.get("link"))
        if status == 304:
            return RunnersPage(page, True, [], etag, last_page, None)
        assert isinstance(data, dict)
        runners = [parse_runner(item) for item in data.get("runners") or ()]
        total = data.get("total_count")
        if last_page is None and total is not None:
            # Without a Link header (single page) derive it from the total.
            last_page = max(1, -(-int(total) // PER_PAGE))
        return RunnersPage(
            page=page,
            not_modified=False,
            runners=runners,
            etag=response_headers.get("etag"),
            last_page=last_page,
            total_count=int(total) if total is not None else None,
        )

    def get_runner(self, runner_id: int) -> RunnerInfo:
        return parse_runner(self._get("get_runner", f"{self.runners_url}/{runner_id}"))

    def runner_applications(self) -> list[RunnerApplication]:
        """The runner application downloads GitHub offers (its newest release, one
        per OS and architecture), for the repository or the organization. A
        conditional request: an unchanged list costs no API budget."""
        data = self._get(
            "runner_applications", f"{self.runners_url}/downloads", conditional=True
        )
        return [
            RunnerApplication(
                os=str(item.get("os") or ""),
                architecture=str(item.get("architecture") or ""),
                filename=str(item.get("filename") or ""),
                download_url=str(item.get("download_url") or ""),
            )
            for item in data or ()
            if isinstance(item, dict)
        ]

    def delete_runner(self, runner_id: int) -> None:
        """Remove a self-hosted runner from GitHub (204). A runner GitHub no longer
        has answers 404 (``GitHubNotFound``): the caller decides whether that is
        success."""
        with self._call("delete_runner"):
            self._requester.requestJsonAndCheck(
                "DELETE", f"{self.runners_url}/{runner_id}"
            )
