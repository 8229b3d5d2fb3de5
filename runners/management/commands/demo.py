"""``manage.py demo --simulator URL``: wire the demo fleet to the bundled simulator.

1. Sync the runner registry from the configured GitHub (the simulator).
2. Give every active runner the simulator knows a heartbeat token, unless it already
   heartbeats with one, and hand the token to the simulated host through the
   simulator's control API (the only place the plaintext goes; it is never printed
   or stored).
3. Point each simulated runner's exporter URL at the simulator's node_exporter page.

Running it again changes nothing for runners that heartbeat: a token is only ever
shown once, so a runner is given a new one when the simulator holds none (it was
restarted) or its heartbeats stopped arriving (e.g. the database was reset).
"""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone

from controlplane.github import GitHubError
from runners import sync
from runners.models import Runner

ACTOR = "demo"
CONTROL_TIMEOUT = 10.0


class Command(BaseCommand):
    help = (
        "Sync runners from the GitHub simulator, issue heartbeat tokens to its hosts "
        "and point exporter URLs at it (the demo that dev.py run starts)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--simulator",
            default=settings.GITHUB_SIMULATOR_URL,
            help="Base URL of the GitHub simulator (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base = str(options["simulator"]).rstrip("/")
        session = requests.Session()
        try:
            result = sync.sync_fleet()
        except GitHubError as exc:
            raise CommandError(f"cannot sync runners from GitHub: {exc}") from None
        hosts = _simulated_hosts(session, base)
        now = timezone.now()
        runners = list(Runner.objects.active().filter(name__in=list(hosts)))
        tokens = 0
        for runner in runners:
            heartbeating = (
                runner.heartbeat_token_digest is not None
                and runner.heartbeat_deadline is not None
                and runner.heartbeat_deadline > now
            )
            if heartbeating and hosts[runner.name]:
                continue
            token = runner.issue_heartbeat_token(actor=ACTOR)
            _control(session, base, f"/_sim/runners/{runner.name}/token", token=token)
            tokens += 1
        template = f"{base}/_sim/exporter/{{name}}/metrics"
        exporters = 0
        for runner in runners:
            url = template.replace("{name}", runner.name)
            if runner.exporter_url != url:
                exporters += Runner.objects.filter(
                    Q(pk=runner.pk) & ~Q(exporter_url=url)
                ).update(exporter_url=url)
        self.stdout.write(
            f"demo: {result.listed} runners synced from {settings.GITHUB_API_URL} "
            f"({result.appeared} new, {result.removed} removed), "
            f"{tokens} heartbeat tokens issued, {exporters} exporter URLs set, "
            f"simulator {base}"
        )


def _control(session: requests.Session, base: str, path: str, **body: Any) -> Any:
    try:
        response = session.post(base + path, json=body, timeout=CONTROL_TIMEOUT)
    except requests.RequestException as exc:
        raise CommandError(f"cannot reach the simulator at {base}: {exc}") from None
    if response.status_code >= 400:
        raise CommandError(
            f"the simulator refused POST {path} ({response.status_code})"
        )
    return response.json() if response.content else None


def _simulated_hosts(session: requests.Session, base: str) -> dict[str, bool]:
    """Each simulated runner's name and whether its host holds a heartbeat token."""
    hosts: dict[str, bool] = {}
    page = 1
    while True:
        try:
            response = session.get(
                f"{base}/_sim/runners",
                params={"page": page, "per_page": 1000},
                timeout=CONTROL_TIMEOUT,
            )
            response.raise_for_status()
        except requests.RequestException as exc:
            raise CommandError(f"cannot list the simulator's runners: {exc}") from None
        data = response.json()
        for item in data["runners"]:
            hosts[str(item["name"])] = bool(item.get("heartbeat_token_set"))
        if len(hosts) >= int(data["total_count"]) or not data["runners"]:
            return hosts
        page += 1
