"""Celery liveness: the beat tick, run tracking for periodic jobs, the broker check."""

from __future__ import annotations

import logging
import os
import time
from contextlib import ContextDecorator
from types import TracebackType

from celery import shared_task

from controlplane import broker, notifications
from controlplane.celery import app
from controlplane.models import TaskStatus

logger = logging.getLogger(__name__)

BEAT_TASK_STATUS = "beat"


class tracked(ContextDecorator):  # noqa: N801 - used like a function: tracked("sync")
    """Record a periodic job's outcome and duration in ``TaskStatus`` under ``name``.

    As a context manager or a decorator::

        @shared_task
        def sync_runners() -> None:
            with tracked("runner-sync"):
                runners.sync.sync_from_github()

    The exception of a failed run is recorded (its type and message, truncated) and
    raised again, so Celery still sees the failure.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._started = 0.0

    def __enter__(self) -> tracked:
        self._started = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        duration = time.monotonic() - self._started
        error = f"{exc_type.__name__}: {exc}" if exc_type else ""
        try:
            TaskStatus.objects.record(
                self.name, ok=exc_type is None, duration=duration, error=error
            )
        except Exception:
            # Losing the record must not hide the job's own outcome (or its error).
            logger.exception("could not record the status of %s", self.name)


@shared_task(ignore_result=True)
def beat_tick() -> None:
    """Beat sends this every 15 s: its timestamp proves beat and a worker both run."""
    with tracked(BEAT_TASK_STATUS):
        pass


def check_broker(*, timeout: int = 2) -> None:
    """Raise if the Celery broker cannot take messages right now.

    The filesystem broker is a set of folders, so it is ready when they exist and
    are writable; a network broker must accept a connection within ``timeout``.
    """
    if app.conf.broker_url.startswith(broker.SCHEMES):
        options = app.conf.broker_transport_options
        folders = [options.get("data_folder_in"), options.get("data_folder_out")]
        if options.get("store_processed"):
            folders.append(options.get("processed_folder"))
        for folder in folders:
            if folder and not os.access(folder, os.W_OK | os.X_OK):
                raise OSError(f"broker folder {folder} is missing or not writable")
        return
    with app.connection_for_write(connect_timeout=timeout) as connection:
        # One attempt, no sleeping between attempts: a probe must answer quickly.
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=timeout
        )


@shared_task(ignore_result=True)
def deliver_notifications() -> None:
    """Beat sends this every 5 s: new deploy and runner events become notifications,
    and due notifications are sent to the configured webhooks."""
    with tracked("notifications"):
        notifications.process()
