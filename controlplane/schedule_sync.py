"""Write the periodic tasks declared in ``controlplane.schedules`` to beat's rows
after migrate, keeping fields edited in the admin (see that module)."""

from __future__ import annotations

import logging
from typing import Any

from django.apps.registry import Apps
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from controlplane.models import CodeSchedule
from controlplane.schedules import table

logger = logging.getLogger(__name__)


def row_values(task: PeriodicTask) -> dict[str, Any]:
    """A row's current values of the fields a :class:`Schedule` decides."""
    if task.interval is not None:
        when = f"every {task.interval.every} {task.interval.period}"
    elif task.crontab is not None:
        cron = task.crontab
        fields = (
            cron.minute,
            cron.hour,
            cron.day_of_month,
            cron.month_of_year,
            cron.day_of_week,
        )
        when = f"crontab {' '.join(fields)}"
    else:
        # A solar or clocked schedule: only an admin sets those.
        when = "other"
    return {
        "task": task.task,
        "schedule": when,
        "queue": task.queue,
        "expire_seconds": task.expire_seconds,
        "description": task.description,
    }


def _apply(task: PeriodicTask, field: str, value: Any, using: str) -> None:
    """Set one of the row's fields to its declared value (unsaved)."""
    if field != "schedule":
        setattr(task, field, value)
        return
    # Exactly one kind of schedule per row: clear the others.
    task.interval = task.crontab = task.solar = task.clocked = None
    kind, *parts = value.split()
    if kind == "every":
        task.interval, _ = IntervalSchedule.objects.using(using).get_or_create(
            every=int(parts[0]), period=parts[1]
        )
    else:
        minute, hour, day_of_month, month_of_year, day_of_week = parts
        task.crontab, _ = CrontabSchedule.objects.using(using).get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone="UTC",
        )


def sync(using: str = "default") -> list[str]:
    """Create or update every registered periodic task's row, keeping admins' edits;
    returns one line per row created or changed, or per field kept."""
    lines: list[str] = []
    with transaction.atomic(using=using):
        written = {code.name: code for code in CodeSchedule.objects.using(using).all()}
        rows = PeriodicTask.objects.using(using).select_related("interval", "crontab")
        declared_table = table()
        names = [schedule.name for schedule in declared_table]
        existing = {task.name: task for task in rows.filter(name__in=names)}
        for schedule in declared_table:
            declared = schedule.values()
            task = existing.get(schedule.name)
            if task is None:
                task = PeriodicTask(name=schedule.name)
                for field, value in declared.items():
                    _apply(task, field, value, using)
                task.save(using=using)
                lines.append(f"{schedule.name}: created")
            else:
                lines += _update(task, declared, written.get(schedule.name), using)
            code = written.get(schedule.name) or CodeSchedule(name=schedule.name)
            if code.values != declared:
                code.values = declared
                code.save(using=using)
    for line in lines:
        logger.info("periodic task %s", line)
    return lines


def _update(
    task: PeriodicTask,
    declared: dict[str, Any],
    code: CodeSchedule | None,
    using: str,
) -> list[str]:
    """Bring the row's code-owned fields to ``declared``; keep admins' edits."""
    current = row_values(task)
    last = code.values if code is not None else {}
    lines = []
    changed = False
    for field, value in declared.items():
        if current[field] == value:
            continue
        if field in last and current[field] == last[field]:
            _apply(task, field, value, using)
            changed = True
            lines.append(f"{task.name}: {field} {current[field]!r} -> {value!r}")
        else:
            lines.append(
                f"{task.name}: {field} kept at {current[field]!r}, not what the "
                f"code last wrote (it declares {value!r})"
            )
    if changed:
        # save(), not update(): its signal tells a running beat to reload.
        task.save(using=using)
    return lines


def sync_after_migrate(*, using: str, apps: Apps, **kwargs: Any) -> None:
    """``post_migrate`` handler: sync the periodic tasks once migrate is done."""
    try:
        apps.get_model("controlplane", "CodeSchedule")
        apps.get_model("django_celery_beat", "PeriodicTask")
    except LookupError:
        # Migrated back below the tables the sync writes.
        return
    sync(using)
