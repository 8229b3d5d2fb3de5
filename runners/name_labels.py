"""Each pool runner must carry its own name as a label: the deploy workflow targets
``runs-on: [self-hosted, <name>]``, so a pool runner without it would leave every
deploy sent to it queued. Flagged ``missing_name_label`` at each sync and whenever
a pool changes; deploys pass a flagged runner over (``runners.eligibility``).

Only runners GitHub listed are judged: an admin may register a runner before its
host is up, and labels not read yet are unknown, not missing.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.apps import apps
from django.db import transaction

from runners.health import bulk_insert
from runners.models import Runner, RunnerEvent


def carries_name(name: str, labels: Iterable[object]) -> bool:
    """Whether ``labels`` hold ``name`` (GitHub matches labels case-insensitively)."""
    wanted = name.casefold()
    return any(str(label).casefold() == wanted for label in labels)


def pool_runner_ids() -> set[int]:
    """Every runner in some environment's pool."""
    # The pool belongs to deploys, which builds on this app: named, not imported.
    entry = apps.get_model("deploys", "EnvironmentRunner")
    return set(
        entry._default_manager.order_by().values_list("runner_id", flat=True).distinct()
    )


def flag() -> int:
    """Set ``missing_name_label`` on the pool runners that lack their name label and
    clear it everywhere else, with an event on each runner whose flag changed;
    returns how many changed. Pools are small (the runners deploys go to), so their
    labels are read into Python: a few queries whatever the fleet's size."""
    pool = pool_runner_ids()
    rows = Runner.objects.filter(pk__in=pool, github_id__isnull=False).values_list(
        "pk", "name", "labels", "missing_name_label", "state"
    )
    changes: dict[int, tuple[bool, str, str]] = {}
    for pk, name, labels, flagged, state in rows:
        missing = not carries_name(name, labels)
        if missing != flagged:
            text = (
                f"missing its name label {name}"
                if missing
                else f"carries its name label {name} again"
            )
            changes[pk] = (missing, state, text)
    # Runners that left every pool, or are no longer known to GitHub.
    left = (
        Runner.objects.filter(missing_name_label=True)
        .exclude(pk__in=pool, github_id__isnull=False)
        .values_list("pk", "state")
    )
    for pk, state in left:
        changes[pk] = (
            False,
            state,
            "no longer in a pool: its name label is not needed",
        )
    if not changes:
        return 0
    with transaction.atomic():
        for missing in (True, False):
            pks = [pk for pk, change in changes.items() if change[0] is missing]
            if pks:
                Runner.objects.filter(pk__in=pks).update(missing_name_label=missing)
        bulk_insert(
            [
                RunnerEvent(
                    runner_id=pk,
                    kind=RunnerEvent.Kind.FLAGGED
                    if missing
                    else RunnerEvent.Kind.UNFLAGGED,
                    from_state=state,
                    to_state=state,
                    message=text,
                    actor="name-label-check",
                )
                for pk, (missing, state, text) in changes.items()
            ]
        )
    return len(changes)


def flagged_names(runner_ids: Iterable[int]) -> list[str]:
    """The names of those runners that are flagged, for a form's warning."""
    return list(
        Runner.objects.filter(pk__in=list(runner_ids), missing_name_label=True)
        .order_by("name")
        .values_list("name", flat=True)
    )
