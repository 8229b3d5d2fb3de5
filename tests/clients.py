"""Ways a test reaches the control plane as its callers do: a signed webhook, the
WSGI front door, a /metrics scrape."""

from __future__ import annotations

import hashlib
import hmac
import io
import sys
from typing import Any

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

WEBHOOK_SECRET = "webhook-test-secret"  # noqa: S105


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def call_wsgi(
    path: str,
    method: str = "POST",
    token: str | None = None,
    body: bytes = b"",
    extra: dict[str, str] | None = None,
) -> tuple[str, dict[str, str], bytes]:
    """Call the production WSGI application (what gunicorn serves) directly."""
    from controlplane.wsgi import application

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "HTTP_HOST": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
    }
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    environ.update(extra or {})
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(headers))

    chunks = application(environ, start_response)
    content = b"".join(chunks)
    getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], content


def scrape(client: Client) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Samples by name, then by sorted labels."""
    text = client.get("/metrics").content.decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples
