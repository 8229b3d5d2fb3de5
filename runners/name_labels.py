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

from runners.models import Runner


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
    clear it everywhere else; returns how many flags changed. Pools are small (the
    runners deploys go to), so their labels are read into Python: three or four
    queries whatever the fleet's size."""
    pool = pool_runner_ids()
    rows = Runner.objects.filter(pk__in=pool, github_id__isnull=False).values_list(
        "pk", "name", "labels", "missing_name_label"
    )
    missing = {pk for pk, name, labels, _ in rows if not carries_name(name, labels)}
    wrong = [pk for pk, _, _, flagged in rows if flagged != (pk in missing)]
    changed = 0
    if wrong:
        to_set = [pk for pk in wrong if pk in missing]
        to_clear = [pk for pk in wrong if pk not in missing]
        if to_set:
            changed += Runner.objects.filter(pk__in=to_set).update(
                missing_name_label=True
            )
        if to_clear:
            changed += Runner.objects.filter(pk__in=to_clear).update(
                missing_name_label=False
            )
    # Runners that left every pool, or are no longer known to GitHub.
    changed += (
        Runner.objects.filter(missing_name_label=True)
        .exclude(pk__in=pool, github_id__isnull=False)
        .update(missing_name_label=False)
    )
    return changed


def flagged_names(runner_ids: Iterable[int]) -> list[str]:
    """The names of those runners that are flagged, for a form's warning."""
    return list(
        Runner.objects.filter(pk__in=list(runner_ids), missing_name_label=True)
        .order_by("name")
        .values_list("name", flat=True)
    )
