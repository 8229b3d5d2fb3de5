"""A small fake JIRA REST server for the tests: a real HTTP server in a thread that
answers the calls the ``jira`` library makes for the control plane, in JIRA's shapes
(REST API v2): get an issue, add a comment, list and perform transitions.

Faults, as JIRA or the network produce them: credentials refused (401) or an account
without permission (403), issues that do not exist (404), the next answers failing
with a status (5xx), answers slower than the client waits, and the server gone.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

USER = "cp-bot@example.com"
TOKEN = "jira-api-token-for-tests"  # noqa: S105

ISSUE = re.compile(r"^/rest/api/2/issue/(?P<key>[A-Z][A-Z0-9_]*-\d+)(?P<rest>/.*)?$")


@dataclass
class FakeIssue:
    key: str
    status: str
    # Transition name -> the status it leads to, available from any status.
    transitions: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Seen:
    """A request as the server received it (never its headers)."""

    method: str
    path: str
    authorized: bool


class FakeJira:
    """The server; ``with FakeJira(user=..., token=...) as jira:`` starts it."""

    def __init__(self, *, user: str = "", token: str = "") -> None:
        self.user = user
        self.token = token
        self.issues: dict[str, FakeIssue] = {}
        self.seen: list[Seen] = []
        # Statuses the next requests answer with, one each, before any real answer.
        self.faults: deque[int] = deque()
        # Seconds each answer waits (an unresponsive JIRA).
        self.delay = 0.0
        # Answer every request 403 (an account without the permission).
        self.forbidden = False
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeJira:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering: the port is closed, connections are refused."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def add_issue(
        self, key: str, status: str = "Approved", **transitions: str
    ) -> FakeIssue:
        issue = FakeIssue(key, status, dict(transitions))
        self.issues[key] = issue
        return issue

    def fail_next(self, count: int, status: int = 503) -> None:
        self.faults.extend([status] * count)

    def comments(self, key: str) -> list[str]:
        return list(self.issues[key].comments)

    # The HTTP side -------------------------------------------------------------------

    def _authorized(self, header: str) -> bool:
        if not self.token:
            return True
        if self.user:
            pair = f"{self.user}:{self.token}".encode()
            return header == "Basic " + base64.b64encode(pair).decode()
        return header == f"Bearer {self.token}"

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            if self.faults:
                status = self.faults.popleft()
                return status, {"errorMessages": [f"fault {status}"], "errors": {}}
            if self.forbidden:
                return 403, {"errorMessages": ["Forbidden"], "errors": {}}
            match = ISSUE.match(path)
            issue = self.issues.get(match["key"]) if match else None
            if match is None or issue is None:
                return 404, {
                    "errorMessages": [
                        "Issue does not exist or you do not have permission to see it."
                    ],
                    "errors": {},
                }
            rest = match["rest"] or ""
            if method == "GET" and rest == "":
                return 200, self._issue_json(issue)
            if method == "POST" and rest == "/comment":
                issue.comments.append(str(body.get("body", "")))
                number = sum(len(i.comments) for i in self.issues.values())
                return 201, {
                    "id": str(10000 + number),
                    "self": f"{self.url}/rest/api/2/issue/{issue.key}/comment/{number}",
                    "body": issue.comments[-1],
                }
            if method == "GET" and rest == "/transitions":
                return 200, {"transitions": self._transitions_json(issue)}
            if method == "POST" and rest == "/transitions":
                wanted = str((body.get("transition") or {}).get("id", ""))
                for number, target in enumerate(issue.transitions.values()):
                    if str(number + 11) == wanted:
                        issue.status = target
                        return 204, None
                return 400, {"errorMessages": ["no such transition"], "errors": {}}
            return 404, {"errorMessages": ["no such resource"], "errors": {}}

    def _issue_json(self, issue: FakeIssue) -> dict[str, Any]:
        return {
            "id": str(10000 + list(self.issues).index(issue.key)),
            "key": issue.key,
            "self": f"{self.url}/rest/api/2/issue/{issue.key}",
            "fields": {
                "status": {
                    "self": f"{self.url}/rest/api/2/status/1",
                    "id": "1",
                    "name": issue.status,
                }
            },
        }

    def _transitions_json(self, issue: FakeIssue) -> list[dict[str, Any]]:
        return [
            {"id": str(number + 11), "name": name, "to": {"name": target}}
            for number, (name, target) in enumerate(issue.transitions.items())
        ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests read ``seen``

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                authorized = fake._authorized(self.headers.get("Authorization", ""))
                with fake.lock:
                    fake.seen.append(Seen(method, path, authorized))
                if fake.delay and fake._stopping.wait(fake.delay):
                    return
                if not authorized:
                    status, body = (
                        401,
                        {"errorMessages": ["Unauthorized"], "errors": {}},
                    )
                else:
                    try:
                        parsed = json.loads(raw) if raw else {}
                    except ValueError:
                        parsed = {}
                    status, body = fake._answer(method, path, parsed)
                data = b"" if body is None else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json;charset=UTF-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

            def do_GET(self) -> None:  # noqa: N802 - http.server's names
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

        return Handler


@contextmanager
def connected(settings: Any, *, token: str = TOKEN) -> Iterator[FakeJira]:
    """A fake JIRA the control plane is configured for: basic auth, a short timeout,
    the default allowed statuses, no transitions."""
    with FakeJira(user=USER, token=token) as fake:
        settings.JIRA_URL = fake.url
        settings.JIRA_USER = USER
        settings.JIRA_TOKEN = token
        settings.JIRA_TIMEOUT = 0.5
        settings.JIRA_ALLOWED_STATUSES = ["Approved", "In Progress"]
        settings.JIRA_TRANSITION_ON_SUCCESS = ""
        settings.JIRA_TRANSITION_ON_FAILURE = ""
        yield fake
