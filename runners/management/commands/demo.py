"""``manage.py demo --simulator URL``: wire the demo fleet to the bundled simulator.

1. Sync the runner registry from the configured GitHub (the simulator).
2. Give every active runner the simulator knows a heartbeat token, unless it already
   heartbeats with one, and hand the token to the simulated host through the
   simulator's control API (the only place the plaintext goes; it is never printed
   or stored).
3. Point each simulated runner's exporter URL at the simulator's node_exporter page.
4. Create the ``production`` (primary and two secondaries) and ``staging`` (its
   exporter signal advisory) environments with their runner pools;
   ``production-eu``, whose deploy rules take only commits that succeeded in
   staging, only from ``main`` or release tags, each approved by a second SRE; and
   ``billing``, whose deploys a second SRE approves. Then rotation schedules for
   the simulator's secrets (one due soon, one overdue), checked against it once.
5. Store two diagnostics reports from the production primary when it has none, so
   its page shows a report, a history and what changed; install the shipped canary
   workflow in the simulator, so canaries run (``diagnostics.demo``).
6. Load the ``INVENTORY_PATH`` file now if it changed, rather than at beat's next
   look (``dev.py`` points it at ``inventory/demo-hosts.ini``, which drifts from the
   simulator's fleet on purpose: one runner missing, one rogue, one with a label
   short).
7. With ``--history``, request a deploy to each environment when none has been made
   yet, except those promoting from another (their commit must succeed there
   first); the running worker takes them through the real engine, so the deploy
   pages show true history. ``billing``'s waits for an SRE's approval: it is
   requested by an SRE other than the first user (the admin), who can approve it.

Running it again changes nothing for runners that heartbeat: a token is only ever
shown once, so a runner is given a new one when the simulator holds none (it was
restarted) or its heartbeats stopped arriving (e.g. the database was reset).
Environments, pools, rules and schedules that exist are left as they are (an SRE may
have edited them); an inventory file is loaded again only when its content changed.
"""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone

from controlplane.github import GitHubError
from deploys import triggers
from deploys.models import DeployRun, Environment
from diagnostics import demo as diagnostics_demo
from inventory import conf as inventory_conf
from inventory import loading as inventory_loading
from rotations import domain
from rotations.models import SecretRotationSchedule
from runners import sync
from runners.models import Runner

ACTOR = "demo"
CONTROL_TIMEOUT = 10.0
# name -> pool (primary first) and the secrets its workflow needs; the runners and
# secrets are the simulator's demo fleet (githubsim.state.SimState.load_demo).
ENVIRONMENTS = {
    "production": (
        ["prod-primary-1", "prod-secondary-1", "prod-secondary-2"],
        ["DEPLOY_KEY", "PROD_DB_PASSWORD"],
    ),
    "staging": (["staging-1", "staging-2"], ["DEPLOY_KEY", "STAGING_DB_PASSWORD"]),
    # A second production region, served by production's secondaries.
    "production-eu": (["prod-secondary-2", "prod-secondary-1"], ["DEPLOY_KEY"]),
    "billing": (["build-1", "build-2"], ["DEPLOY_KEY"]),
}
PRODUCTION = ("production", "production-eu", "billing")
# Deploy rules and approvals in the control plane other than the defaults (none):
# production-eu takes what staging has run, from main or a release tag, approved by
# a second SRE; every billing deploy needs a second SRE's approval.
RULES: dict[str, dict[str, Any]] = {
    "production-eu": {
        "promote_from": "staging",
        "allowed_refs": "refs/heads/main refs/tags/v*",
        "signoffs_required": 1,
    },
    "billing": {"signoffs_required": 1},
}
# Refs beside main in the simulator's repository: a release tag on main's commit
# (allowed in production-eu once staging has run that commit) and a feature branch
# one commit ahead (refused there by the allowed-refs rule).
DEMO_TAG = "v1.0.0"
DEMO_BRANCH = "feature/retry-budget"
# Signal policies other than the strict default: staging's runners may take deploys
# while Prometheus cannot reach their exporters (a firewall between them), as long
# as they heartbeat.
SIGNAL_POLICIES = {"staging": {"exporter_policy": "advisory"}}
# The runner whose page shows diagnostics reports.
DIAGNOSED = "prod-primary-1"
# (name, scope, environment, interval days, required by). The simulator's
# DEPLOY_KEY was set 80 days ago (due soon on a 90-day interval), REGISTRY_TOKEN
# 120 days ago (overdue).
SCHEDULES = [
    ("DEPLOY_KEY", "repository", None, 90, ["production", "staging"]),
    ("REGISTRY_TOKEN", "repository", None, 90, []),
    ("PROD_DB_PASSWORD", "environment", "production", 90, ["production"]),
    ("STAGING_DB_PASSWORD", "environment", "staging", 180, ["staging"]),
]


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
        parser.add_argument(
            "--history",
            action="store_true",
            help="Request a deploy to each demo environment that has none yet "
            "(a running worker carries them out).",
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
            # A new token only where heartbeats cannot work: the host or the runner
            # has none, or a live host's heartbeats are refused (its token is not
            # the runner's). A host killed in the simulator keeps its token: a new
            # one would not revive it, only add a "token issued" event to the
            # runner's page on every demo load.
            holds_token, alive = hosts[runner.name]
            if runner.heartbeat_token_digest is not None and holds_token:
                if runner.heartbeat_is_fresh(now) or not alive:
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
        refs = _refs(session, base)
        if refs is None:
            self.stdout.write("demo: the simulator refused the demo's tag and branch")
        created = _environments()
        schedules = _schedules()
        self.stdout.write(
            f"demo: {created} environments, {schedules} secret schedules and "
            f"{refs or 0} git refs created"
        )
        primary = Runner.objects.active().filter(name=DIAGNOSED).first()
        reports = diagnostics_demo.seed(primary, now) if primary else 0
        self.stdout.write(f"demo: {reports} diagnostics reports stored")
        if not diagnostics_demo.install_canary_workflow(session, base):
            self.stdout.write("demo: the simulator refused the canary workflow")
        self.stdout.write(f"demo: {_inventory()}")
        if options["history"]:
            requested = _history()
            self.stdout.write(f"demo: {requested} deploys requested")


def _environments() -> int:
    """Create the demo environments that do not exist, each with its pool and its
    rules (a promotion source that no longer exists is left out)."""
    runners = {r.name: r for r in Runner.objects.active()}
    created = 0
    for name, (pool, required) in ENVIRONMENTS.items():
        rules = dict(RULES.get(name, {}))
        if "promote_from" in rules:
            rules["promote_from"] = Environment.objects.filter(
                name=rules["promote_from"]
            ).first()
        env, new = Environment.objects.get_or_create(
            name=name,
            defaults={
                "repository": settings.GITHUB_REPOSITORY,
                "required_secrets": required,
                **SIGNAL_POLICIES.get(name, {}),
                **rules,
                "production": name in PRODUCTION,
            },
        )
        if new:
            env.set_pool([runners[n] for n in pool if n in runners])
            created += 1
    return created


def _refs(session: requests.Session, base: str) -> int | None:
    """Give the simulator's repository the demo tag and branch unless it has them;
    how many refs were created, None when the simulator refused them (it holds
    another repository). The tag is made first, so a simulator that has it has both
    (a restarted simulator has neither); no GitHub call is spent on it."""
    repo = settings.GITHUB_REPOSITORY
    made = 0
    for path, body in (
        ("tags", {"tag": DEMO_TAG, "target": "main"}),
        ("push", {"ref": DEMO_BRANCH, "message": "Retry GitHub calls within a budget"}),
    ):
        try:
            response = session.post(
                f"{base}/_sim/repos/{repo}/{path}", json=body, timeout=CONTROL_TIMEOUT
            )
        except requests.RequestException as exc:
            raise CommandError(f"cannot reach the simulator at {base}: {exc}") from None
        if response.status_code == 422 and "already_exists" in response.text:
            return made
        if response.status_code >= 400:
            return None
        made += 1
    return made


def _schedules() -> int:
    """Create the demo rotation schedules that do not exist, and check unchecked
    ones against GitHub so the secrets page shows their state at once (beat runs
    the audit only daily)."""
    envs = {e.name: e for e in Environment.objects.filter(name__in=ENVIRONMENTS)}
    created = 0
    for name, scope, env_name, interval, required_by in SCHEDULES:
        env = envs.get(env_name) if env_name else None
        if env_name and env is None:
            continue
        schedule, new = SecretRotationSchedule.objects.get_or_create(
            name=name,
            scope=scope,
            repository="",
            environment=env,
            defaults={"interval_days": interval, "owner": "platform-team"},
        )
        if new:
            schedule.required_by.set([envs[n] for n in required_by if n in envs])
            created += 1
    if SecretRotationSchedule.objects.filter(last_checked_at__isnull=True).exists():
        domain.audit_schedules(actor=ACTOR)
    return created


def _inventory() -> str:
    """Load the INVENTORY_PATH file if its content changed; what happened, in words."""
    if not inventory_conf.path():
        return "no INVENTORY_PATH: no intended inventory loaded"
    load = inventory_loading.load_file()
    if load is None:
        return f"the inventory file {inventory_conf.path()} was read already, unchanged"
    if not load.accepted:
        return f"the inventory file {load.filename} was refused: {load.error}"
    return f"inventory loaded from {load.filename}: {load.hosts} runners expected"


def _history() -> int:
    """Request a deploy of the default ref to each demo environment without one,
    except those promoting from another environment (nothing has succeeded there
    yet: the request would be refused)."""
    users = get_user_model().objects.filter(is_active=True).order_by("pk")
    requester = users.first()
    # A deploy awaiting approval in the control plane is requested by another SRE
    # when there is one, so the first user (dev.py's admin) may approve it: no one
    # approves their own deploy.
    sres = users.filter(Q(groups__name__in=["sre", "admin"]) | Q(is_superuser=True))
    colleague = sres.exclude(pk=requester.pk).first() if requester else None
    requested = 0
    envs = Environment.objects.filter(name__in=ENVIRONMENTS, promote_from=None)
    for env in envs.order_by("pk"):
        if DeployRun.objects.filter(environment=env).exists():
            continue
        user = (colleague or requester) if env.signoffs_required else requester
        triggers.request_deploy(user or AnonymousUser(), env)
        requested += 1
    return requested


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


def _simulated_hosts(
    session: requests.Session, base: str
) -> dict[str, tuple[bool, bool]]:
    """Each simulated runner's name, whether its host holds a heartbeat token, and
    whether the host is alive (not killed)."""
    hosts: dict[str, tuple[bool, bool]] = {}
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
            hosts[str(item["name"])] = (
                bool(item.get("heartbeat_token_set")),
                bool(item.get("alive", True)),
            )
        if len(hosts) >= int(data["total_count"]) or not data["runners"]:
            return hosts
        page += 1
