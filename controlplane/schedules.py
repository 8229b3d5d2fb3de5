"""Beat's periodic tasks, declared in code and written to the database after migrate.

Each app declares its periodic tasks as :class:`Schedule` entries and registers them
in its ``AppConfig.ready()``; ``controlplane.schedule_sync`` upserts them into
django-celery-beat's ``PeriodicTask`` rows, which beat reads. It runs after every
``manage.py migrate`` (a ``post_migrate`` handler, connected in
``controlplane.apps``), so every path that makes a database current (``dev.py run``,
the compose ``migrate`` service, the test database) also makes its schedules current,
and a changed interval setting reaches beat at the next migrate, with no caller to
forget.

Admins may still edit the rows in the admin. :class:`~controlplane.models.CodeSchedule`
keeps the values the code last wrote to each row: a field still holding that value is
updated when the code's declaration changes; a field holding anything else was edited
in the admin and is kept. A row with no such record (made by the data migrations
before this table existed) is treated the same way: only fields equal to the code's
declaration are the code's. To hand a field back to the code, set it in the admin to
what the code declares. To stop a task, disable it: a deleted one is created again.

The data migrations that first made these rows stay as history: they only create rows
that do not exist yet, with the values this table declares, so they never undo it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Setting:
    """A number of seconds read from settings when the schedules are synced, so a
    changed setting reaches the row at the next migrate."""

    name: str

    def resolve(self) -> int:
        return int(getattr(settings, self.name))


@dataclass(frozen=True)
class Schedule:
    """One periodic task: beat sends ``task`` to ``queue`` every ``every`` ``period``
    (or at ``crontab``, five fields as in crontab(5), in UTC); a message not picked up
    within ``expire_seconds`` is dropped."""

    name: str
    task: str
    queue: str
    description: str
    every: int | Setting | None = None
    period: str = "seconds"
    crontab: str | None = None
    expire_seconds: int | Setting | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.crontab is None):
            raise ImproperlyConfigured(f"{self.name}: give either every or crontab")
        if self.crontab is not None and len(self.crontab.split()) != 5:
            raise ImproperlyConfigured(f"{self.name}: crontab needs five fields")

    def values(self) -> dict[str, Any]:
        """The row's fields this entry decides, in the form ``schedule_sync`` reads
        them back (JSON, to be stored in ``CodeSchedule.values``)."""
        if self.crontab is not None:
            when = f"crontab {' '.join(self.crontab.split())}"
        else:
            assert self.every is not None  # noqa: S101 # __post_init__ made sure
            every = (
                self.every.resolve() if isinstance(self.every, Setting) else self.every
            )
            when = f"every {every} {self.period}"
        expires = self.expire_seconds
        return {
            "task": self.task,
            "schedule": when,
            "queue": self.queue,
            "expire_seconds": expires.resolve()
            if isinstance(expires, Setting)
            else expires,
            "description": self.description,
        }


_table: dict[str, Schedule] = {}


def register(*schedules: Schedule) -> None:
    """Add an app's periodic tasks to the table (from its ``AppConfig.ready()``)."""
    for schedule in schedules:
        if _table.get(schedule.name, schedule) != schedule:
            raise ImproperlyConfigured(f"two periodic tasks named {schedule.name!r}")
        _table[schedule.name] = schedule


def table() -> list[Schedule]:
    """Every registered periodic task, by name."""
    return [_table[name] for name in sorted(_table)]


# The control plane's own periodic tasks.
SCHEDULES = (
    Schedule(
        name="Beat liveness tick",
        task="controlplane.tasks.beat_tick",
        every=15,
        queue="health",
        # A tick stuck behind a backlog is dropped: running it late would claim the
        # worker is keeping up when it is not.
        expire_seconds=60,
        description=(
            "Proves Celery beat and a health worker both run: each run records "
            "the 'beat' task status, which the self-monitoring alert watches."
        ),
    ),
    Schedule(
        name="Deliver notifications",
        task="controlplane.tasks.deliver_notifications",
        every=5,
        queue="health",
        # The outbox keeps the work: a tick dropped behind a backlog loses nothing,
        # the next one picks the same rows up.
        expire_seconds=30,
        description=(
            "Turns new deploy and runner events into notifications and sends "
            "due ones to NOTIFY_WEBHOOK_URLS / NOTIFY_SLACK_WEBHOOK_URLS, "
            "retrying with backoff."
        ),
    ),
)
