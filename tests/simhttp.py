"""Talking to the GitHub simulator over HTTP as GitHub's clients do, and checking
its answers against GitHub's published schemas."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from github import Auth, Github
from jsonschema import Draft202012Validator

from githubsim import Simulator

DATA = Path(__file__).parent / "data" / "github"
REPO = "/repos/acme/deploy"
TOKEN = {"Authorization": "token test-token"}


# Schemas --------------------------------------------------------------------------------


def openapi30_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` becomes ``anyOf [..., null]``."""
    if isinstance(node, list):
        return [openapi30_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: openapi30_to_jsonschema(value) for key, value in node.items()}
    if converted.get("nullable") is True:
        del converted["nullable"]
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


REST = json.loads((DATA / "rest.subset.json").read_text())
REST_COMPONENTS = openapi30_to_jsonschema(REST["components"])
WEBHOOKS = json.loads((DATA / "webhooks.subset.json").read_text())


def rest_schema(method: str, path: str, status: int) -> dict[str, Any]:
    response = REST["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response = REST["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = openapi30_to_jsonschema(response["content"]["application/json"]["schema"])
    return {**schema, "components": REST_COMPONENTS}


def assert_rest_shape(method: str, path: str, response: requests.Response) -> Any:
    """The body matches GitHub's schema for this operation and status."""
    body = response.json()
    schema = rest_schema(method, path, response.status_code)
    errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    return body


def assert_component_shape(name: str, body: Any) -> None:
    """The body matches one of GitHub's schema components (e.g. ``basic-error``)."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": REST_COMPONENTS}
    errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def assert_webhook_shape(name: str, payload: dict[str, Any]) -> None:
    ref = WEBHOOKS["webhooks"][name]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    schema = {**ref, "components": WEBHOOKS["components"]}
    errors = sorted(Draft202012Validator(schema).iter_errors(payload), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def github(sim: Simulator, token: str = "test-token", lazy: bool = False) -> Github:
    return Github(
        base_url=sim.url,
        auth=Auth.Token(token),
        lazy=lazy,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def get(sim: Simulator, path: str, **kw: Any) -> requests.Response:
    headers = {**TOKEN, **kw.pop("headers", {})}
    return requests.get(sim.url + path, headers=headers, timeout=10, **kw)


def post(sim: Simulator, path: str, body: Any = None, **kw: Any) -> requests.Response:
    headers = {**TOKEN, **kw.pop("headers", {})}
    return requests.post(sim.url + path, json=body, headers=headers, timeout=10, **kw)


def dispatch(sim: Simulator, runner: str, token: str = "corr-1") -> int:
    response = post(
        sim,
        f"{REPO}/actions/workflows/deploy.yml/dispatches",
        {
            "ref": "main",
            "inputs": {"runner": runner, "token": token},
            "return_run_details": True,
        },
    )
    assert response.status_code == 200, response.text
    run_id: int = response.json()["workflow_run_id"]
    return run_id


def job_of(sim: Simulator, run_id: int) -> dict[str, Any]:
    jobs: dict[str, Any] = get(sim, f"{REPO}/actions/runs/{run_id}/jobs").json()
    job: dict[str, Any] = jobs["jobs"][0]
    return job


class Captured:
    """A tiny HTTP receiver that records every POST (webhooks, heartbeats)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        captured = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with captured.lock:
                    captured.requests.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[tuple[str, dict[str, Any], dict[str, str], bytes]]:
        with self.lock:
            return [
                (h["x-github-event"], json.loads(b), h, b) for h, b in self.requests
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
