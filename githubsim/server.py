"""The HTTP front: authentication, faults, rate limits and ETags around the handlers."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from githubsim import api, control, shapes
from githubsim.errors import ApiError
from githubsim.routing import Reply, Request, Sim

MAX_BODY = 1024 * 1024
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
# Endpoints GitHub does not charge to the core budget.
FREE_ROUTES = {"GET /rate_limit"}
DISPATCH_ROUTE = "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"


def etags(header: str) -> set[str]:
    """The ETags an ``If-None-Match`` header lists, weak ones compared as strong."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: Sim) -> None:
        super().__init__(address, SimRequestHandler)
        self.sim = sim


class SimRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle's algorithm and the client's
    # delayed ACK every answer with a body would stall ~40 ms. GitHub sends with
    # TCP_NODELAY too.
    disable_nagle_algorithm = True
    server_version = "githubsim"
    server: SimHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines would only repeat what the counters already know."""

    def do_GET(self) -> None:
        self.handle_any("GET")

    def do_POST(self) -> None:
        self.handle_any("POST")

    def do_PUT(self) -> None:
        self.handle_any("PUT")

    def do_DELETE(self) -> None:
        self.handle_any("DELETE")

    def do_PATCH(self) -> None:
        self.handle_any("PATCH")

    # Pipeline -------------------------------------------------------------------------

    def handle_any(self, method: str) -> None:
        sim = self.server.sim
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        raw = self.read_body()
        request = Request(
            sim=sim,
            method=method,
            path=path,
            params={},
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=None,
            base=f"http://{self.headers.get('Host') or sim.address}",
        )
        control_api = path.startswith("/_sim/")
        try:
            if raw:
                try:
                    request.body = json.loads(raw)
                except ValueError:
                    raise ApiError(400, "Problems parsing JSON") from None
            if control_api:
                reply = self.control(request)
            else:
                reply = self.github(request)
        except ApiError as exc:
            body: dict[str, Any] = shapes.error(exc.message, exc.status)
            if exc.errors:
                body["errors"] = exc.errors
            reply = Reply(status=exc.status, body=body)
            if not control_api and request.token:
                # GitHub charges refused calls (404, 409, 422) like any other.
                sim.state.limits.spend(request.token)
                reply.headers.update(self.rate_headers(request.token))
        except Exception:  # a bug answers 500 in GitHub's shape, never a dropped socket
            reply = Reply(status=500, body=shapes.error("Server Error", 500))
        if reply.status == 0:
            self.close_connection = True
            return
        self.send(reply)

    def control(self, request: Request) -> Reply:
        found = control.router.match(request.method, request.path)
        if found is None:
            raise ApiError(404, "Not Found")
        route, request.params = found
        return route.handler(request)

    def github(self, request: Request) -> Reply:
        """1. route and count, 2. latency, 3. auth, 4. faults, 5. budget, 6. answer,
        7. conditional 304 (free), 8. spend budget."""
        sim = request.sim
        state = sim.state
        found = api.router.match(request.method, request.path)
        if found is None:
            state.limits.count_request(f"{request.method} (unknown)")
            raise ApiError(404, "Not Found")
        route, request.params = found
        state.limits.count_request(route.name)
        if state.faults.latency_ms > 0:
            time.sleep(state.faults.latency_ms / 1000)
        request.token = self.authenticate(request)
        fault = state.limits.pick_fault(state.faults)
        if fault is not None:
            return self.fault_reply(request, fault)
        free = route.name in FREE_ROUTES
        limit, remaining, used, reset = state.limits.budget(request.token)
        if remaining <= 0 and not free:
            reply = Reply(
                status=403,
                body={
                    "message": f"API rate limit exceeded for token. (limit {limit})",
                    "documentation_url": RATE_LIMIT_DOCS,
                },
            )
            reply.headers.update(self.rate_headers(request.token))
            return reply
        reply = route.handler(request)
        if route.name == DISPATCH_ROUTE and reply.status < 300:
            with state.lock:
                lost = state.faults.dispatch_errors_after_create > 0
                if lost:
                    state.faults.dispatch_errors_after_create -= 1
            if lost:  # the run exists; only the answer is an error
                state.limits.spend(request.token)
                body = shapes.error("Server Error", 502)
                return Reply(
                    status=502, body=body, headers=self.rate_headers(request.token)
                )
        if request.method == "GET" and reply.status == 200:
            payload = api.encode(reply.body)
            reply.body = payload
            reply.etag = reply.etag or f'"{hashlib.sha256(payload).hexdigest()[:40]}"'
            if reply.etag in etags(request.headers.get("if-none-match", "")):
                # Conditional hits are free on GitHub; clients rely on that for polling.
                not_modified = Reply(status=304, etag=reply.etag)
                not_modified.headers.update(self.rate_headers(request.token))
                return not_modified
        if not free:
            state.limits.spend(request.token)
        reply.headers.update(self.rate_headers(request.token))
        return reply

    def authenticate(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() not in ("token", "bearer") or not token:
            raise ApiError(401, "Requires authentication")
        if request.sim.state.limits.token_expired(token):
            raise ApiError(401, "Bad credentials")
        return token

    def fault_reply(self, request: Request, fault: str) -> Reply:
        state = request.sim.state
        config = state.config
        if fault == "error":
            status = 502 if state.random.random() < 0.5 else 503
            message = "Server Error" if status == 502 else "Service Unavailable"
            headers = self.rate_headers(request.token)
            return Reply(
                status=status, body=shapes.error(message, status), headers=headers
            )
        headers = self.rate_headers(request.token)
        if fault == "rate_limit":
            limit = config.rate_limit
            reset = int(state.clock.now() + config.rate_limit_fault_reset)
            headers.update(
                {
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-used": str(limit),
                    "x-ratelimit-reset": str(reset),
                }
            )
            body = {
                "message": f"API rate limit exceeded for token. (limit {limit})",
                "documentation_url": RATE_LIMIT_DOCS,
            }
            return Reply(status=403, body=body, headers=headers)
        headers["retry-after"] = str(config.retry_after)
        body = {
            "message": "You have exceeded a secondary rate limit. Please wait a few "
            "minutes before you try again.",
            "documentation_url": RATE_LIMIT_DOCS,
        }
        status = 429 if fault == "too_many_requests" else 403
        return Reply(status=status, body=body, headers=headers)

    def rate_headers(self, token: str) -> dict[str, str]:
        limit, remaining, used, reset = self.server.sim.state.limits.budget(token)
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(used),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": "core",
        }

    # Wire ---------------------------------------------------------------------------

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length else b""

    def send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("X-GitHub-Request-Id", uuid.uuid4().hex[:20].upper())
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.etag:
            self.send_header("ETag", reply.etag)
        if reply.status in (204, 304):
            self.end_headers()
            return
        payload = b"" if reply.body is None else api.encode(reply.body)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
