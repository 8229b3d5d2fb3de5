"""Enqueue deploy work by task name.

The engine and the models start ``deploys.tasks.advance_run``, and the tasks call the
engine: sending by name keeps that a runtime link, not an import cycle. The name
goes through the app's ``task_routes`` like ``advance_run.delay`` would, so the
message lands on the ``deploys`` queue all the same.
"""

from __future__ import annotations

from django.db import transaction

from controlplane.celery import app

ADVANCE_RUN = "deploys.tasks.advance_run"


def advance(run_id: int) -> None:
    """Have a worker advance the deploy run now."""
    app.send_task(ADVANCE_RUN, args=(run_id,))


def advance_on_commit(run_id: int) -> None:
    """Have a worker advance the deploy run once the current transaction commits."""
    transaction.on_commit(lambda: advance(run_id))
