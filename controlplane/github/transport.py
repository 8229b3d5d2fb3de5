"""The hook that sends every HTTP request PyGithub makes through a gateway.

Pagination, installation-token fetches and retries all pass through the connection
classes installed here, which hand each request to the active gateway's exchange
(:mod:`controlplane.github.policy`), so counting and retrying happen once per HTTP
request and nowhere else.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, Protocol

import requests
from github.Requester import (
    HTTPRequestsConnectionClass,
    HTTPSRequestsConnectionClass,
    Requester,
    RequestsResponse,
)


class Exchange(Protocol):
    """What the transport needs of a gateway: its timeout and its exchange loop."""

    timeout: float

    def _exchange(
        self, verb: str, path: str, send: Callable[[], requests.Response]
    ) -> requests.Response: ...


# The gateway whose call is in progress in this thread or task; PyGithub's requests made
# during that call (including token fetches by the auth object) go through its exchange.
ACTIVE: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "github_gateway", default=None
)


class _ExchangeMixin:
    """Sends PyGithub's requests through the active gateway's retry and counting loop.

    PyGithub hands a request to ``request()`` and collects it with ``getresponse()``
    on one shared connection object; keeping the pending request per thread lets
    threads of one web process share the gateway safely.
    """

    host: str
    port: int
    protocol: str
    timeout: int | None
    verify: bool | str
    session: requests.Session
    _pending: threading.local

    def request(
        self,
        verb: str,
        url: str,
        input: Any,
        headers: dict[str, str],
        stream: bool = False,
    ) -> None:
        self._pending.request = (verb, url, input, headers)

    def getresponse(self) -> RequestsResponse:
        verb, path, body, headers = self._pending.request
        self._pending.request = None
        gateway = ACTIVE.get()
        timeout = gateway.timeout if gateway is not None else self.timeout

        def send() -> requests.Response:
            return self.session.request(
                verb,
                f"{self.protocol}://{self.host}:{self.port}{path}",
                headers=headers,
                data=body,
                timeout=timeout,
                verify=self.verify,
                allow_redirects=False,
            )

        if gateway is None:
            return RequestsResponse(send())
        return RequestsResponse(gateway._exchange(verb, path, send))


# The gateway builds its clients with retry=0, so urllib3 never retries behind its back.
class _HTTPConnection(_ExchangeMixin, HTTPRequestsConnectionClass):
    def __init__(self, host: str, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._pending = threading.local()


class _HTTPSConnection(_ExchangeMixin, HTTPSRequestsConnectionClass):
    def __init__(self, host: str, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._pending = threading.local()


Requester.injectConnectionClasses(_HTTPConnection, _HTTPSConnection)
# Injection also turns off connection reuse (it exists for PyGithub's replay tests);
# keep-alive matters for paginated syncs and the connections above are thread-safe.
Requester._Requester__persist = True  # type: ignore[attr-defined]
