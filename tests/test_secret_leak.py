"""The leak test: a canary value rotated through the UI and the API (accepted,
refused by GitHub, crashing after the PUT, denied, invalid), with every logger at
DEBUG, must appear nowhere the control plane keeps or shows anything.

Searched, for the canary and for its common encodings and digests (hex, base64,
MD5, SHA-1, SHA-256): every row of every database table; every log record (message,
arguments, traceback) and everything written to stdout/stderr; every Redis key and
value when the suite runs with a Redis broker; every HTTP response body and header,
including Django's technical 500 page (DEBUG on) and the app's error pages; the
/metrics output; the audit rows. The counts per place are printed (``-s``) and
written to ``var/secret-leak-report-<database>.json`` for the closing note.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets as random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connection
from django.http import HttpResponse
from django.test import Client

from controlplane.models import AuditEvent
from githubsim import Simulator, repository_scope
from githubsim.errors import invalid
from githubsim.secretstore import SecretStore
from rotations import domain as secret_rotation
from rotations.models import SecretRotation, SecretRotationSchedule
from tests.conftest import SUITE_BROKER_URL

REPO = "acme/deploy"

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(time_scale=60, seed=9, demo=True, connect=True, max_retries=0),
]


def needles(canary: str) -> list[str]:
    """The canary and what it would look like encoded or hashed."""
    raw = canary.encode()
    return [
        canary,
        raw.hex(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        hashlib.md5(raw).hexdigest(),  # noqa: S324 - searched for, not used
        hashlib.sha1(raw).hexdigest(),  # noqa: S324
        hashlib.sha256(raw).hexdigest(),
    ]


def hits(text: str, canary: str) -> int:
    return sum(text.count(needle) for needle in needles(canary))


@contextmanager
def every_logger_at_debug() -> Iterator[None]:
    """Root and every named logger (PyGithub's and urllib3's too) at DEBUG."""
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
    ]
    levels = [(logger, logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for logger, level, _propagate in levels:
            logger.setLevel(level)


def dump_database() -> tuple[str, int]:
    """Every row of every table as text, and how many rows that was."""
    parts: list[str] = []
    rows = 0
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                rows += 1
                for value in row:
                    if isinstance(value, memoryview):
                        value = bytes(value)
                    if isinstance(value, bytes):
                        parts.append(value.decode("latin-1"))
                    else:
                        parts.append(str(value))
    return "\n".join(parts), rows


def dump_redis() -> tuple[str, int] | None:
    """Every key and value in the suite's Redis broker database, or None when the
    suite does not run with Redis."""
    if not (SUITE_BROKER_URL or "").startswith("redis"):
        return None
    import redis

    client: Any = redis.Redis.from_url(str(SUITE_BROKER_URL))
    parts: list[str] = []
    keys = 0
    for key in client.scan_iter(count=1000):
        keys += 1
        parts.append(key.decode("latin-1"))
        kind = client.type(key).decode()
        values: list[Any]
        if kind == "string":
            values = [client.get(key)]
        elif kind == "list":
            values = list(client.lrange(key, 0, -1))
        elif kind == "hash":
            values = [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [
                member for member, _ in client.zrange(key, 0, -1, withscores=True)
            ]
        else:
            values = []
        parts.extend(v.decode("latin-1") for v in values if v is not None)
    return "\n".join(parts), keys


def response_text(response: HttpResponse) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.items())
    cookies = response.cookies.output()
    return f"{response.status_code}\n{headers}\n{cookies}\n" + response.content.decode(
        "utf-8", "replace"
    )


def test_canary_appears_nowhere(
    sim: Simulator,
    admin_user: User,
    viewer: User,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    canary = "CANARY-" + random.token_hex(16)
    schedule = SecretRotationSchedule(name="DEPLOY_KEY")
    schedule.save()
    ui = f"/secrets/{schedule.pk}/rotate/"
    api = f"/api/v1/secret-schedules/{schedule.pk}/rotate/"
    admin = Client(raise_request_exception=False)
    admin.force_login(admin_user)
    denied = Client(raise_request_exception=False)
    denied.force_login(viewer)
    responses: list[Any] = []

    def api_post(client: Client, url: str, body: dict[str, Any]) -> Any:
        return client.post(url, body, content_type="application/json")

    caplog.set_level(logging.DEBUG)
    with every_logger_at_debug():
        # Accepted, through the UI and the API.
        responses.append(admin.post(ui, {"value": canary}, follow=True))
        assert sim.state.decrypt_secret(repository_scope(REPO), "DEPLOY_KEY") == canary
        responses.append(api_post(admin, api, {"value": canary}))
        assert responses[-1].status_code == 200
        # Denied, invalid, unknown schedule.
        responses.append(denied.post(ui, {"value": canary}))
        responses.append(api_post(denied, api, {"value": canary}))
        responses.append(admin.post(ui, {"value": canary, "generate": "on"}))
        responses.append(api_post(admin, api, {"value": canary, "generate": True}))
        responses.append(api_post(admin, api, {"value": canary * 5000}))
        responses.append(admin.post("/secrets/999999/rotate/", {"value": canary}))
        responses.append(
            api_post(
                admin, "/api/v1/secret-schedules/999999/rotate/", {"value": canary}
            )
        )
        assert [r.status_code for r in responses[2:]] == [
            403,
            403,
            400,
            400,
            400,
            404,
            404,
        ]
        # Refused by GitHub after the public key was fetched.
        with monkeypatch.context() as patch:

            def refuse(self: SecretStore, *args: Any, **kwargs: Any) -> bool:
                raise invalid("Bad request: key_id does not match", "key_id")

            patch.setattr(SecretStore, "put_sealed", refuse)
            responses.append(admin.post(ui, {"value": canary}))
            responses.append(api_post(admin, api, {"value": canary}))
        assert [r.status_code for r in responses[-2:]] == [502, 502]
        # A crash after GitHub took the value: the error pages, with DEBUG off (the
        # app's 500 page) and on (Django's technical 500 page with every frame).
        with monkeypatch.context() as patch:

            def crash(*args: Any, **kwargs: Any) -> None:
                raise RuntimeError("database went away")

            patch.setattr(secret_rotation, "_read_back", crash)
            technical: list[Any] = []
            for debug in (False, True):
                settings.DEBUG = debug
                technical = [
                    admin.post(ui, {"value": canary}),
                    api_post(admin, api, {"value": canary}),
                ]
                responses.extend(technical)
            settings.DEBUG = False
        assert [r.status_code for r in responses[-4:]] == [500, 500, 500, 500]
        responses.append(admin.get(f"/secrets/{schedule.pk}/"))
        responses.append(admin.get("/secrets/"))
        responses.append(
            admin.get(f"/api/v1/secret-schedules/{schedule.pk}/rotations/")
        )
        metrics_text = admin.get("/metrics").content.decode()

    # Sanity: the technical 500 page was really rendered, so searching it means
    # something; and the run did rotate (the search is not over an empty system).
    assert (
        b"Traceback" in responses[-4].content
        or b"RuntimeError" in responses[-4].content
    )
    assert SecretRotation.objects.filter(schedule=schedule).count() == 2
    assert AuditEvent.objects.filter(action="secret.rotate").count() >= 4

    database, rows = dump_database()
    logs = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.exc_text or ''} "
        f"{logging.Formatter().formatException(r.exc_info) if r.exc_info else ''}"
        for r in caplog.records
    )
    out, err = capfd.readouterr()
    redis_dump = dump_redis()
    audit_rows = "\n".join(
        json.dumps(row, default=str) for row in AuditEvent.objects.values()
    )
    http = "\n".join(response_text(r) for r in responses)

    counts: dict[str, Any] = {
        "database": {
            "vendor": connection.vendor,
            "tables": len(connection.introspection.table_names()),
            "rows": rows,
            "found": hits(database, canary),
        },
        "logs": {"records": len(caplog.records), "found": hits(logs, canary)},
        "stdout_stderr": {
            "chars": len(out) + len(err),
            "found": hits(out + err, canary),
        },
        "redis": (
            {"keys": redis_dump[1], "found": hits(redis_dump[0], canary)}
            if redis_dump is not None
            else "not used (no Redis broker in this run)"
        ),
        "http_responses": {"responses": len(responses), "found": hits(http, canary)},
        "metrics": {"chars": len(metrics_text), "found": hits(metrics_text, canary)},
        "audit_rows": {
            "rows": AuditEvent.objects.count(),
            "found": hits(audit_rows, canary),
        },
    }
    report = json.dumps(counts, indent=2)
    print(f"\nsecret leak test ({connection.vendor}):\n{report}")
    var_dir = django_settings.VAR_DIR
    var_dir.mkdir(parents=True, exist_ok=True)
    (var_dir / f"secret-leak-report-{connection.vendor}.json").write_text(report + "\n")

    found = {
        place: value["found"]
        for place, value in counts.items()
        if isinstance(value, dict) and value["found"]
    }
    assert not found, f"the canary leaked: {found}"
    # The searches saw real material: log records of the rotations and responses.
    assert counts["logs"]["records"] > 0
    assert rows > 0
