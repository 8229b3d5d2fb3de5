"""Request and reply types and the route table shared by the GitHub and control APIs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from githubsim.clock import SimClock
from githubsim.errors import ApiError, invalid
from githubsim.models import Faults
from githubsim.state import SimState
from githubsim.webhooks import WebhookSender


class Sim(Protocol):
    """What the HTTP server and the handlers use of the running simulator.

    :class:`githubsim.simulator.Simulator` is the implementation; naming only this much here
    keeps the server and the handlers beneath the simulator that starts them.
    """

    @property
    def state(self) -> SimState: ...

    @property
    def clock(self) -> SimClock: ...

    @property
    def webhooks(self) -> WebhookSender: ...

    @property
    def address(self) -> str: ...

    def reset(self) -> None: ...

    def clear_faults(self) -> Faults: ...

    def set_webhook(self, url: str, secret: str) -> None: ...


@dataclass
class Reply:
    """What a handler answers: a status, a JSON-able body (or raw bytes) and headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    content_type: str = "application/json; charset=utf-8"


@dataclass
class Request:
    """One parsed request as handlers see it."""

    sim: Sim
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    base: str
    token: str = ""

    def int_param(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise ApiError(404, "Not Found") from None

    def json_object(self) -> dict[str, Any]:
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise ApiError(400, "Problems parsing JSON")
        return self.body

    def page(self, default_per_page: int = 30) -> tuple[int, int]:
        """``page`` and ``per_page`` as GitHub reads them (per_page at most 100)."""
        try:
            page = int(self.query.get("page", "1"))
            per_page = int(self.query.get("per_page", str(default_per_page)))
        except ValueError:
            raise invalid("Invalid page or per_page", "page") from None
        return max(1, page), min(100, max(1, per_page))

    def link_header(self, page: int, per_page: int, total: int) -> str | None:
        """GitHub's ``Link`` header, built on the host the client used."""
        last = max(1, -(-total // per_page))
        links: list[str] = []

        def url(number: int) -> str:
            query = {**self.query, "per_page": str(per_page), "page": str(number)}
            return f"<{self.base}{self.path}?{urlencode(query)}>"

        if page > 1:
            links.append(f'{url(page - 1)}; rel="prev"')
        if page < last:
            links.append(f'{url(page + 1)}; rel="next"')
            links.append(f'{url(last)}; rel="last"')
        if page > 1:
            links.append(f'{url(1)}; rel="first"')
        return ", ".join(links) or None


Handler = Callable[[Request], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


class Router:
    """Path templates in GitHub's ``{name}`` syntax mapped to handlers."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str) -> Callable[[Handler], Handler]:
        """Route ``template``; a ``{name+}`` segment may contain slashes (git refs
        such as ``heads/feature/x``), a ``{name}`` one may not."""
        regex = re.sub(r"\{(\w+)\+\}", r"(?P<\1>.+)", template)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        pattern = re.compile(f"^{regex}$")
        template = template.replace("+}", "}")

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, template, pattern, handler))
            return handler

        return register

    def include(self, other: Router) -> None:
        """Add another router's routes after this one's, in their order."""
        self.routes.extend(other.routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for a request; literal segments win over ``{name}`` ones."""
        allowed = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict()
            allowed = True
        if allowed:
            raise ApiError(405, "Method Not Allowed")
        return None
