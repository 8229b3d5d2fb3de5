"""``GET /sd/exporters``: Prometheus HTTP service discovery of the runner exporters.

Prometheus (``http_sd_configs``, see ``monitoring/prometheus/prometheus.yml``) asks
every refresh interval for the whole list and scrapes each runner host's exporter
directly. The answer is a JSON list of target groups, one per active runner with an
``exporter_url``::

    [{"targets": ["build-7.example:9100"],
      "labels": {"runner": "build-7", "environment": "production",
                 "pool_position": "0", "environments": ",production,staging,",
                 "runner_state": "healthy"}}]

- ``runner``: the runner's name, the label dashboards template on;
- ``environment`` and ``pool_position``: the pool where the runner ranks highest
  (position 0 is the primary), absent for a runner in no pool; ``environments``:
  every pool it is in, between commas (match with ``=~".*,production,.*"``);
- ``runner_state``: its health state (not ``state``, which node_exporter's systemd
  collector uses itself and Prometheus would rename to ``exported_state``);
- ``__scheme__``, ``__metrics_path__`` and ``__param_<name>`` when the exporter URL
  is not plain ``http://host:port/metrics``. Credentials in an exporter URL are never
  sent (configure ``basic_auth`` on the scrape job instead).

Two queries whatever the fleet's size: the runners, then every pool entry.
Authenticated with a bearer token (``runners.sd_conf``), compared in constant time,
never logged; wrong tokens count against the client address like the other tokens
(``controlplane.throttle``). Answers 200; 401 (missing or wrong token, with
``WWW-Authenticate``); 403 (discovery is off: no token configured); 429 (the address
sent too many wrong tokens); 503 (the token file cannot be read); 405 (not a GET).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.apps import apps
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from controlplane import throttle
from runners import sd_conf
from runners.models import Runner

logger = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_CHALLENGE = 'Bearer realm="runner exporters"'


def exporter_target(url: str) -> tuple[str, dict[str, str]] | None:
    """The ``host:port`` Prometheus scrapes for ``url`` and the labels that make it
    scrape exactly that URL; None for a URL Prometheus cannot scrape."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        # An IPv6 address (urlsplit drops its brackets; names have no colon).
        host = f"[{host}]"
    # Always an explicit port: Prometheus 3 no longer adds the scheme's default.
    target = f"{host}:{port or _DEFAULT_PORTS[scheme]}"
    labels: dict[str, str] = {}
    if scheme != "http":
        labels["__scheme__"] = scheme
    if parts.path not in ("", "/metrics"):
        labels["__metrics_path__"] = parts.path
    if parts.query:
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if not _LABEL_NAME.fullmatch(name):
                # Prometheus refuses the whole answer for one bad label name.
                return None
            labels.setdefault(f"__param_{name}", value)
    return target, labels


def target_groups() -> list[dict[str, Any]]:
    """The discovery answer: one target group per active runner with a usable
    exporter URL, ordered by name. Two queries."""
    runners = list(
        Runner.objects.active()
        .exclude(exporter_url="")
        .order_by("name", "pk")
        .values_list("pk", "name", "exporter_url", "state")
    )
    pools = _pools() if runners else {}
    groups = []
    for pk, name, url, state in runners:
        found = exporter_target(url)
        if found is None:
            continue
        target, labels = found
        labels.update(runner=name, runner_state=state)
        places = pools.get(pk)
        if places:
            # The pool where it ranks highest; ties go to the first by name.
            position, environment = min((pos, env) for env, pos in places)
            labels.update(
                environment=environment,
                pool_position=str(position),
                environments="," + ",".join(sorted(env for env, _ in places)) + ",",
            )
        groups.append({"targets": [target], "labels": labels})
    return groups


def _pools() -> dict[int, list[tuple[str, int]]]:
    """Every pool entry, by runner id: ``[(environment, position)]``. One query for
    all of them (the table is small: reading it whole beats naming 10,000 ids)."""
    # The pool belongs to deploys, which builds on this app: named, not imported.
    entry = apps.get_model("deploys", "EnvironmentRunner")
    pools: dict[int, list[tuple[str, int]]] = {}
    rows = entry._default_manager.order_by().values_list(
        "runner_id", "environment__name", "position"
    )
    for runner_id, environment, position in rows:
        pools.setdefault(runner_id, []).append((environment, position))
    return pools


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def token_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison (of digests, so not even the length shows)."""
    return hmac.compare_digest(_digest(presented), _digest(expected))


def _refuse(request: HttpRequest, status: int, message: str) -> JsonResponse:
    """A refusal; a 401 counts against the client address first (429 once it is
    locked)."""
    retry_after = 0
    if status == 401:
        now = timezone.now()
        until = throttle.token_refused(
            throttle.Scope.SD_TOKEN_ADDRESS, throttle.client_address(request.META), now
        )
        if until is not None:
            status = 429
            message = throttle.token_lockout_message(until, now)
            retry_after = throttle.seconds_left(until, now)
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = _CHALLENGE
    if retry_after:
        response["Retry-After"] = str(retry_after)
    if status == 405:
        response["Allow"] = "GET, HEAD"
    return response


@csrf_exempt
@login_not_required
def exporters(request: HttpRequest) -> HttpResponse:
    """The runner exporters for Prometheus, to a client holding the SD token."""
    if request.method not in ("GET", "HEAD"):
        return _refuse(request, 405, "use GET")
    try:
        expected = sd_conf.bearer_token()
    except sd_conf.TokenUnavailable as exc:
        logger.error("service discovery refused: %s", exc)
        return _refuse(request, 503, f"service discovery is misconfigured: {exc}")
    if not expected:
        return _refuse(
            request,
            403,
            "service discovery is off: set SD_BEARER_TOKEN_FILE (or SD_BEARER_TOKEN) "
            "on the control plane and give Prometheus the same token",
        )
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented or len(presented) > 500:
        return _refuse(
            request,
            401,
            "send the service discovery token as Authorization: Bearer <token> "
            "(Prometheus: authorization.credentials_file)",
        )
    if not token_matches(presented, expected):
        return _refuse(
            request,
            401,
            "wrong service discovery token: use the one in the control plane's "
            "SD_BEARER_TOKEN_FILE",
        )
    body = json.dumps(target_groups(), separators=(",", ":"))
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response
