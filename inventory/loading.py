"""Loading the intended inventory: from an admin's upload or API call, and from the
INVENTORY_PATH file when its content changes. A load that cannot be read replaces
nothing; the inventory in force stays until a good one arrives."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from controlplane import audit
from controlplane.audit import Actor
from controlplane.models import AuditEvent
from inventory import conf
from inventory.expected import ExpectedHost, detect, read
from inventory.hosts import InventoryError
from inventory.models import ExpectedRunner, InventoryLoad

FILE_ACTOR = "inventory-file"


def decode(data: bytes) -> str:
    """The text of an uploaded or read inventory: UTF-8, within the size limit."""
    if len(data) > conf.max_bytes():
        raise InventoryError(
            f"the inventory is {len(data)} bytes, more than INVENTORY_MAX_BYTES "
            f"({conf.max_bytes()}): load the runner hosts only"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InventoryError(
            f"byte {exc.start} is not UTF-8: save the file as UTF-8", line
        ) from None


def load_text(
    text: str,
    fmt: str,
    *,
    source: InventoryLoad.Source,
    actor: Actor,
    filename: str = "",
    now: datetime | None = None,
) -> InventoryLoad:
    """Read ``text`` and, if it reads, make it the inventory in force (one
    transaction, audited ``inventory.load``). Raises :class:`InventoryError`, having
    changed nothing, when it does not."""
    now = now or timezone.now()
    if len(text.encode()) > conf.max_bytes():
        decode(text.encode())  # raises, naming the limit
    hosts = read(text, fmt, filename=filename)
    used = detect(text, filename) if fmt == "auto" else fmt
    with transaction.atomic():
        load = InventoryLoad.objects.create(
            source=source,
            loaded_at=now,
            loaded_by=_user(actor),
            actor_name=audit.actor_name(actor),
            filename=filename[:500],
            fmt=used,
            digest=_digest(text.encode()),
            hosts=len(hosts),
        )
        _replace_expected(load, hosts)
        audit.record(
            actor, "inventory.load", load, source=source, format=used, hosts=len(hosts)
        )
    return load


def load_file(now: datetime | None = None) -> InventoryLoad | None:
    """Load INVENTORY_PATH if its content differs from its last load (accepted or
    refused): the new load, or None when nothing changed or no path is set. A file
    that cannot be read is recorded as a refused load, once per content."""
    path = conf.path()
    if not path:
        return None
    now = now or timezone.now()
    problem: InventoryError | None = None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        data, problem = b"", InventoryError(f"cannot read the file: {exc.strerror}")
        digest = "unreadable"
    else:
        digest = _digest(data)
    last = (
        InventoryLoad.objects.filter(source=InventoryLoad.Source.FILE, filename=path)
        .order_by("-loaded_at", "-pk")
        .first()
    )
    if last is not None and last.digest == digest:
        return None
    if problem is None:
        try:
            return load_text(
                decode(data),
                conf.file_format(),
                source=InventoryLoad.Source.FILE,
                actor=FILE_ACTOR,
                filename=path,
                now=now,
            )
        except InventoryError as exc:
            problem = exc
    return _refused(path, digest, problem, now)


def _refused(
    path: str, digest: str, problem: InventoryError, now: datetime
) -> InventoryLoad:
    with transaction.atomic():
        load = InventoryLoad.objects.create(
            source=InventoryLoad.Source.FILE,
            loaded_at=now,
            actor_name=FILE_ACTOR,
            filename=path[:500],
            fmt=conf.file_format(),
            digest=digest,
            accepted=False,
            error=problem.message,
            error_line=problem.line,
        )
        audit.record(
            FILE_ACTOR,
            "inventory.load",
            load,
            outcome=AuditEvent.Outcome.FAILURE,
            source=InventoryLoad.Source.FILE,
            error=str(problem),
        )
    return load


def _replace_expected(load: InventoryLoad, hosts: list[ExpectedHost]) -> None:
    # Only the inventory in force keeps its runners: older loads stay as history.
    ExpectedRunner.objects.exclude(load=load).delete()
    ExpectedRunner.objects.bulk_create(
        [
            ExpectedRunner(
                load=load,
                name=host.name,
                host=host.host,
                labels=list(host.labels) if host.labels is not None else None,
                groups=list(host.groups),
                line=host.line,
            )
            for host in hosts
        ],
        batch_size=1000,
    )


def _user(actor: Actor) -> User | None:
    return actor if isinstance(actor, User) and actor.pk is not None else None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
