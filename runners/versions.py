"""GitHub's runner version rules: where each runner's version is read, the newest
release GitHub offers, and which runners are outdated.

GitHub enforces runner versions: a runner must be recent enough to register and to
keep getting jobs, and one configured with ``--disableupdate`` must be updated by
hand. Two rules flag a runner ``version_outdated``:

- below ``RUNNER_VERSION_MINIMUM`` (set it to the minimum GitHub enforces): GitHub
  refuses it jobs, so deploys pass it over (``runners.eligibility``);
- more than ``RUNNER_VERSION_MAX_MINOR_BEHIND`` minor versions behind the newest
  release (read from GitHub's runner downloads endpoint a few times a day): GitHub
  stops queueing jobs to runners that skip updates for long, on a schedule this
  control plane cannot see, so it is shown and alerted on while deploys still go to
  the runner (a deploy GitHub will not start fails over at its pickup timeout).

A runner's version comes from GitHub's runner list (the sync), else the
heartbeat's facts, else its latest diagnostics report; unknown is never outdated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, CharField, F, Q, Value, When
from django.db.models.fields.json import KT
from django.utils import timezone

from controlplane.github import GitHubError, GitHubGateway, RunnerInfo, gateway
from runners import version_conf
from runners.health import bulk_insert
from runners.hygiene_fields import RunnerRelease, VersionStatus
from runners.models import Runner, RunnerEvent

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_IN_FILENAME = re.compile(r"-(\d+\.\d+\.\d+)\.(?:tar\.gz|zip)$")
# A failed read is tried again this much later (a handful of requests a day at most).
RETRY_AFTER = timedelta(minutes=30)
# A read under way holds the row this long, so two workers never read together.
LEASE = timedelta(minutes=5)

Version = tuple[int, int, int]


def parse(text: str) -> Version | None:
    """``"2.330.0"`` (or ``"v2.330.0"``) as a comparable tuple; None if it is not
    a runner version."""
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def latest_of(filenames: Iterable[str]) -> str:
    """The newest version among runner download file names
    (``actions-runner-linux-x64-2.330.0.tar.gz``); "" when none names one."""
    found = [m.group(1) for name in filenames if (m := _IN_FILENAME.search(name))]
    return max(found, key=lambda v: parse(v) or (0, 0, 0), default="")


def assess(version: str, minimum: str, latest: str, behind: int) -> tuple[str, str]:
    """The ``VersionStatus`` of ``version`` under the rules, and the rule in words."""
    current = parse(version)
    if current is None:
        return VersionStatus.CURRENT, ""
    floor = parse(minimum) if minimum else None
    if floor is not None and current < floor:
        return VersionStatus.BELOW_MINIMUM, f"{version} is below the minimum {minimum}"
    newest = parse(latest) if latest else None
    if newest is None or current >= newest:
        return VersionStatus.CURRENT, ""
    if current[0] < newest[0]:
        text = f"{version} is a major version behind the latest release {latest}"
        return VersionStatus.BEHIND_LATEST, text
    minors = newest[1] - current[1]
    if minors > behind:
        text = (
            f"{version} is {minors} minor versions behind the latest release "
            f"{latest} (at most {behind} allowed)"
        )
        return VersionStatus.BEHIND_LATEST, text
    return VersionStatus.CURRENT, ""


def scope_of(gw: GitHubGateway) -> str:
    return f"{gw.runners_url}/downloads"


def latest_release(gw: GitHubGateway | None = None) -> RunnerRelease | None:
    """What the last read of the downloads endpoint found (None: never read)."""
    return RunnerRelease.objects.filter(scope=scope_of(gw or gateway())).first()


def refresh_latest(
    now: datetime, *, gw: GitHubGateway | None = None, force: bool = False
) -> RunnerRelease | None:
    """Read the newest runner release from GitHub once ``RUNNER_VERSION_FETCH_HOURS``
    have passed since the last read (or ``force``); returns the stored release, or
    None when another worker holds the read.

    1. Claim the row with a conditional UPDATE (a lease): 0 rows means it is not
       due, or someone else is reading.
    2. Read the endpoint with no transaction open; a 304 costs no budget.
    3. Store the version and the next read time, or the error and a retry time.
    """
    gw = gw or gateway()
    scope = scope_of(gw)
    release, _ = RunnerRelease.objects.get_or_create(
        scope=scope, defaults={"next_fetch_at": now}
    )
    due = RunnerRelease.objects.filter(pk=release.pk)
    if not force:
        due = due.filter(next_fetch_at__lte=now)
    if not due.update(next_fetch_at=now + LEASE):
        return None
    try:
        applications = gw.runner_applications()
    except GitHubError as exc:
        logger.warning("reading the newest runner release failed: %s", exc)
        RunnerRelease.objects.filter(pk=release.pk).update(
            error=str(exc)[:500], next_fetch_at=now + RETRY_AFTER
        )
        release.refresh_from_db()
        return release
    latest = latest_of(app.filename for app in applications)
    fields = {
        "fetched_at": now,
        "next_fetch_at": now + timedelta(hours=version_conf.fetch_hours()),
        "error": "" if latest else "no runner version in GitHub's download list",
    }
    if latest:
        fields["latest_version"] = latest
    RunnerRelease.objects.filter(pk=release.pk).update(**fields)
    release.refresh_from_db()
    return release


def record_from_github(infos: Iterable[RunnerInfo]) -> int:
    """Store the versions GitHub's runner list gave (the sync's pages read anew);
    returns the runners whose version changed. One query, plus one per distinct
    version that changed (a fleet runs a handful)."""
    versions = {info.name: info.version[:64] for info in infos if info.version}
    if not versions:
        return 0
    changed: dict[str, list[str]] = {}
    rows = Runner.objects.filter(name__in=list(versions)).values_list(
        "name", "runner_version", "runner_version_source"
    )
    for name, version, source in rows:
        if (version, source) != (versions[name], "github"):
            changed.setdefault(versions[name], []).append(name)
    for version, names in changed.items():
        Runner.objects.filter(name__in=names).update(
            runner_version=version, runner_version_source="github"
        )
    return sum(len(names) for names in changed.values())


def record_reported(runner_id: int, version: object) -> None:
    """A diagnostics report named the runner's version: kept when neither GitHub
    nor the heartbeat tells one."""
    if not isinstance(version, str) or parse(version) is None:
        return
    Runner.objects.filter(
        Q(runner_version_source="") | Q(runner_version_source="diagnostics"),
        pk=runner_id,
    ).update(runner_version=version, runner_version_source="diagnostics")


def check(now: datetime | None = None, *, gw: GitHubGateway | None = None) -> int:
    """Flag the fleet's outdated runners under the current rules; returns the runners
    whose flag changed. Costs the same queries at 10 runners and at 10,000.

    1. Take the heartbeat's version for runners GitHub gives none for.
    2. Judge each distinct version once, in Python.
    3. Where the flag or its words changed: an event for each runner flagged or
       cleared, and one UPDATE.
    """
    now = now or timezone.now()
    (
        Runner.objects.exclude(runner_version_source="github")
        .filter(facts__has_key="runner_version")
        .alias(reported=KT("facts__runner_version"))
        .exclude(runner_version=F("reported"), runner_version_source="heartbeat")
        .update(runner_version=F("reported"), runner_version_source="heartbeat")
    )
    minimum = version_conf.minimum()
    latest = ""
    if version_conf.follow_latest():
        release = latest_release(gw)
        latest = release.latest_version if release else ""
    behind = version_conf.max_minor_behind()
    judged = {
        version: assess(version, minimum, latest, behind)
        for version in Runner.objects.order_by()
        .values_list("runner_version", flat=True)
        .distinct()
    }
    flagged = {v: verdict for v, verdict in judged.items() if verdict[0]}

    def case(index: int) -> Case:
        return Case(
            *(
                When(runner_version=v, then=Value(verdict[index]))
                for v, verdict in flagged.items()
            ),
            default=Value(""),
            output_field=CharField(),
        )

    differing = Runner.objects.alias(status=case(0), note=case(1)).exclude(
        version_outdated=F("status"), version_note=F("note")
    )
    changed = list(
        differing.annotate(new_status=case(0), new_note=case(1)).values_list(
            "pk", "state", "version_outdated", "new_status", "new_note"
        )
    )
    if not changed:
        return 0
    events = [
        RunnerEvent(
            runner_id=pk,
            kind=RunnerEvent.Kind.FLAGGED if status else RunnerEvent.Kind.UNFLAGGED,
            from_state=state,
            to_state=state,
            message=f"version outdated: {note}" if status else "version current again",
            actor="version-check",
            created_at=now,
        )
        for pk, state, old, status, note in changed
        # A note that only moves with the newest release is no event.
        if old != status
    ]
    with transaction.atomic():
        bulk_insert(events)
        differing.update(version_outdated=F("status"), version_note=F("note"))
    return len(changed)


def run(now: datetime | None = None) -> int:
    """The periodic check: read the newest release when due, then flag runners."""
    now = now or timezone.now()
    if version_conf.follow_latest():
        refresh_latest(now)
    return check(now)
