"""Celery beat with a leader: run a beat on every worker host, one of them sends.

Every beat process runs :class:`LeaderScheduler`. The one holding the ``beat`` lease
(a row in the database, :class:`~controlplane.models.Lease`) sends the periodic
tasks and renews the lease on every tick; the others send nothing and try to take
the lease every few seconds. When the leader dies, its lease lapses after
``BEAT_LEASE_SECONDS`` and a standby takes over: within lease + poll (15 + 5 s by
default), under the 30 s in which a dead runner host must be detected.

Why a row lease in the database, and not a PostgreSQL advisory lock or a Redis lock:

- It is the same code on SQLite (the embedded default, several beats on one host)
  and PostgreSQL, and tested the same way on both.
- Its takeover time is bounded by the lease whatever killed the leader. A session
  advisory lock is freed at once when the leader's process exits, but a leader host
  that loses power or its network keeps the lock until PostgreSQL notices the dead
  TCP connection (two hours with default keepalives), with no beat meanwhile; the
  lock also needs a dedicated connection that a pooler in transaction mode breaks.
- The database already decides everything else (principle 1): beat's schedule and
  each task's ``last_run_at`` live there, and the row names the leader for the UI
  and ``/metrics``. A Redis lock would make beat depend on the broker twice over.

No task is sent twice in one period across a takeover: the leader writes an entry's
``last_run_at`` before it sends the task (django-celery-beat writes it up to
minutes later), and a process that becomes leader reloads the schedule from the
database instead of trusting what it read when it started.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections, connections
from django_celery_beat.schedulers import DatabaseScheduler

from controlplane.models import BEAT_LEASE, Lease

logger = logging.getLogger(__name__)

# How often a standby tries to take the lease (capped by beat's --max-interval).
STANDBY_POLL_SECONDS = 5.0
# How long a stopping leader waits to hand the lease over before it exits anyway.
RELEASE_TIMEOUT_SECONDS = 5.0


class LeaderScheduler(DatabaseScheduler):  # type: ignore[misc] # untyped base
    """django-celery-beat's scheduler, sending only while it holds the beat lease."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The nonce: host names and PIDs repeat (containers on the host's network share
        # its name, and each runs beat as PID 1), and two holders with one name would
        # both lead.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leading = False
        self.closed = False
        # The leader last named in a "standing by" line: logged again on a change only.
        self._reported_leader: str | None = None
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send the next due task if this process leads; else wait and try again."""
        if self.closed:
            # Beat's SIGTERM handler closed the scheduler and raised SystemExit, but a
            # broker client interrupted mid-send can swallow that and beat would tick
            # on. Raised here, it ends beat's loop.
            raise SystemExit()
        if not self._hold_lease():
            return self._standby_wait()
        try:
            return float(super().tick(*args, **kwargs))
        except Exception as exc:
            if self.closed:
                # SIGTERM arrived mid-query: the handler closed the scheduler (and
                # its connection) under the query, which then fails. Stop cleanly.
                raise SystemExit() from None
            if not isinstance(exc, DatabaseError | InterfaceError):
                raise
            # The schedule cannot be read or last_run_at written: sending blind could
            # repeat a task. Stop leading; taking the lease back reloads everything.
            logger.exception("beat: database error, no longer leading")
            self.leading = False
            return self._standby_wait()

    def _standby_wait(self) -> float:
        return min(STANDBY_POLL_SECONDS, float(self.max_interval))

    def reserve(self, entry: Any) -> Any:
        """Advance ``entry`` and write its ``last_run_at`` before the task is sent.

        django-celery-beat marks the entry dirty and writes it at the next sync
        (every 3 minutes): a leader dying in between would leave its successor a
        stale ``last_run_at`` and the task would be sent twice in one period.
        """
        new_entry = next(entry)
        # Keep the schedule's entry current too (as celery's own Scheduler does):
        # django-celery-beat leaves the old entry, whose stale last_run_at makes the
        # task due again whenever the heap is rebuilt from the schedule.
        self._schedule[new_entry.name] = new_entry
        model = new_entry.model
        # A plain UPDATE: saving the model would also mark the schedule changed and
        # make every beat reload it.
        self.Model.objects.filter(pk=model.pk).update(
            last_run_at=model.last_run_at, total_run_count=model.total_run_count
        )
        return new_entry

    def close(self) -> None:
        """On a clean stop (SIGTERM), hand the lease over at once, not after it
        lapses."""
        self.closed = True
        super().close()
        if self.leading:
            self.leading = False
            # Beat calls this from its SIGTERM handler, which may have interrupted a
            # query on this thread's connection; a query on that connection now would
            # wait for the interrupted one forever. A thread has a connection of its
            # own; if it cannot finish in time, the lease lapses instead.
            releaser = threading.Thread(target=self._release, name="beat-release")
            releaser.daemon = True
            releaser.start()
            releaser.join(timeout=RELEASE_TIMEOUT_SECONDS)

    def _release(self) -> None:
        try:
            Lease.objects.release(BEAT_LEASE, self.holder)
        except (DatabaseError, InterfaceError):
            logger.warning("beat: could not release the lease; it will lapse")
        else:
            logger.info("beat: released leadership")
        finally:
            connections.close_all()

    def _hold_lease(self) -> bool:
        """Renew the lease if held, else try to take it; True if this process leads."""
        seconds = settings.BEAT_LEASE_SECONDS
        try:
            # Drop a connection a database restart broke, as a request would.
            close_old_connections()
            if self.leading:
                if Lease.objects.renew(BEAT_LEASE, self.holder, seconds=seconds):
                    return True
                self.leading = False
                logger.warning("beat: lost leadership (the lease lapsed)")
            if Lease.objects.acquire(BEAT_LEASE, self.holder, seconds=seconds):
                self._reload_schedule()
                self.leading = True
                self._reported_leader = None
                logger.info("beat: leading (lease %s s, as %s)", seconds, self.holder)
                return True
            leader = Lease.objects.holder_of(BEAT_LEASE)
        except (DatabaseError, InterfaceError) as exc:
            if self.leading:
                logger.warning("beat: database unreachable, no longer leading: %s", exc)
            self.leading = False
            return False
        if leader != self._reported_leader:
            self._reported_leader = leader
            logger.info("beat: standing by (leader is %s)", leader or "nobody")
        return False

    def _reload_schedule(self) -> None:
        """Read every entry afresh: the previous leader has run tasks since this
        process last looked, and their ``last_run_at`` is in the database."""
        self._dirty.clear()
        self._schedule = self.all_as_schedule()
        self._last_timestamp = self.Changes.last_change()
        # Scheduler.tick rebuilds its heap of due times from the new entries.
        self._heap = None
