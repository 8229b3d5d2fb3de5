"""The embedded Celery broker: kombu's filesystem transport, made safe.

kombu's own transport creates a message's file in the queue folder and only then
locks and fills it, so a reader can claim it empty; and a file it cannot decode
raises out of the consumer, which stops a Celery worker for good
(``Unrecoverable error: JSONDecodeError``). This transport, registered as
``safefs://`` (and as ``filesystem://``, so no process of ours runs the unsafe one):

1. writes each message to a staging folder beside the queue folder, fsyncs it and
   renames it into the queue folder: a message appears there whole or not at all;
2. claims a message by renaming it into its process's claims folder (exactly one
   reader wins the rename) and deletes it there once it is acknowledged; a later
   process on the same host returns the claims of a process that died (SIGKILL,
   OOM) to the queue, so acks-late holds across crashes;
3. moves a message it cannot decode to the unreadable folder, logs a warning naming
   the file, and goes on with the next one (the folder's size is a metric);
4. creates a missing exchange table whole, for the reason of 1.

A message a killed worker had claimed is therefore delivered again: tasks must be
safe to run twice, as they are (DESIGN.md, principle 1).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
import uuid
from collections import deque
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

SCHEME = "safefs"
SCHEMES = (SCHEME, "filesystem")
# A write takes milliseconds: a file staged this long ago lost its writer (killed
# mid-write) and will never be renamed into the queue.
ABANDONED_AFTER_SECONDS = 3600
# Claims folders in the processed folder: "claims-<host>-<boot>-<pid>".
CLAIMS_PREFIX = "claims-"


def folders(options: dict[str, Any]) -> dict[str, Path]:
    """Every folder the transport uses, from its transport options.

    The staging and unreadable folders default to siblings of the queue folder:
    staging must be on the same filesystem for the rename to be atomic.
    """
    queue = Path(options.get("data_folder_out", "data_out"))
    return {
        "in": Path(options.get("data_folder_in", "data_in")),
        "out": queue,
        "processed": Path(options.get("processed_folder", "processed")),
        "control": Path(options.get("control_folder", "control")),
        "staging": Path(options.get("staging_folder", queue.parent / "staging")),
        "unreadable": Path(
            options.get("unreadable_folder", queue.parent / "unreadable")
        ),
    }


def embedded_options(folder: Path) -> dict[str, object]:
    """Transport options for the embedded broker with its folders under ``folder``
    (``filesystem://`` names this transport too)."""
    options: dict[str, object] = {
        "data_folder_in": str(folder / "out"),
        "data_folder_out": str(folder / "out"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "staging_folder": str(folder / "staging"),
        "unreadable_folder": str(folder / "unreadable"),
        "store_processed": False,
        # kombu sleeps this long whenever the folder is empty or the worker's
        # prefetch is full; its 1 s default caps a worker at about one batch a
        # second, slower than a few deploys' webhooks arrive, and adds a second
        # to every hop of a deploy (request → gate → dispatch).
        "polling_interval": 0.1,
    }
    # The transport creates the rest of its folders when it connects; web, worker
    # and beat all need the queue folder, whichever starts first.
    (folder / "out").mkdir(parents=True, exist_ok=True)
    return options


def unreadable_messages(options: dict[str, Any]) -> int:
    """How many messages readers have set aside (0 before any was)."""
    try:
        return len(os.listdir(folders(options)["unreadable"]))
    except FileNotFoundError:
        return 0


class Channel(filesystem.Channel):
    """A filesystem channel whose messages appear whole and never stop a reader."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._folders = folders(self.transport_options)
        for name in ("staging", "processed", "unreadable", "control"):
            self._folders[name].mkdir(parents=True, exist_ok=True)
        self._discard_abandoned_writes()
        self._return_claims_of_dead_processes()
        # Names listed but not yet claimed, per queue, oldest first: listing and
        # sorting the folder once per batch rather than once per message keeps a
        # backlog of thousands linear instead of quadratic.
        self._backlogs: dict[str, deque[str]] = {}
        # Claimed files of messages delivered and not yet acknowledged, by tag.
        self._claims: dict[str, Path] = {}

    def _discard_abandoned_writes(self) -> None:
        cutoff = time.time() - ABANDONED_AFTER_SECONDS
        for entry in os.scandir(self._folders["staging"]):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass  # another process discarded it first

    def _return_claims_of_dead_processes(self) -> None:
        """Put the messages a dead process on this host had claimed back in the queue.

        Only this host's: a process on another host (or container, with its own
        process ids) cannot be seen, so its claims wait for a process there.
        """
        host, boot = socket.gethostname(), _boot_id()
        for entry in os.scandir(self._folders["processed"]):
            owner, _, pid = entry.name.removeprefix(CLAIMS_PREFIX).rpartition("-")
            owner_host, _, owner_boot = owner.rpartition("-")
            if not (entry.name.startswith(CLAIMS_PREFIX) and owner_host == host):
                continue
            # Process ids start over at boot: a claim from before one has no owner.
            if owner_boot == boot and (not pid.isdigit() or _alive(int(pid))):
                continue
            returned = 0
            for name in os.listdir(entry.path):
                try:
                    os.rename(Path(entry.path, name), self._folders["out"] / name)
                except FileNotFoundError:
                    continue  # another process returned it first
                returned += 1
            if returned:
                logger.warning(
                    "returned %d unacknowledged broker messages of dead process %s "
                    "to the queue",
                    returned,
                    pid,
                )
            try:
                os.rmdir(entry.path)
            except OSError:
                pass  # another process is emptying it too

    def _claims_folder(self) -> Path:
        # The pid at claim time: Celery's prefork pool forks after the channel opens.
        folder = (
            self._folders["processed"]
            / f"{CLAIMS_PREFIX}{socket.gethostname()}-{_boot_id()}-{os.getpid()}"
        )
        folder.mkdir(exist_ok=True)
        return folder

    # kombu names the argument "payload" here and "message" in the virtual base.
    def _put(  # type: ignore[override]
        self, queue: str, payload: dict[str, Any], **kwargs: Any
    ) -> None:
        """Write the message aside, then rename it into the queue folder."""
        # Wall-clock nanoseconds, fixed width: names sort in sending order across
        # processes and reboots (kombu's monotonic milliseconds restart at boot).
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        staged = self._folders["staging"] / name
        try:
            with open(staged, "xb") as file:
                file.write(str_to_bytes(dumps(payload)))
                file.flush()
                # Durable before visible: after a power cut the name never points
                # at content the disk has not got.
                os.fsync(file.fileno())
            os.rename(staged, self._folders["out"] / name)
        except OSError as exc:
            staged.unlink(missing_ok=True)
            raise ChannelError(f"Cannot add message {name!r} to the queue") from exc

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """Claim, read and return the oldest readable message of ``queue``."""
        backlog = self._backlogs.setdefault(queue, deque())
        listed = False
        while True:
            if not backlog:
                if listed:
                    raise Empty()
                backlog.extend(self._waiting(queue))
                listed = True
                continue
            name = backlog.popleft()
            claimed = self._claims_folder() / name
            try:
                os.rename(self._folders["in"] / name, claimed)
            except FileNotFoundError:
                continue  # another reader claimed it first
            except OSError as exc:
                raise ChannelError(f"Cannot claim message {name!r}") from exc
            payload = self._read(claimed)
            if payload is not None:
                self._claims[payload["properties"]["delivery_tag"]] = claimed
                return payload

    def _waiting(self, queue: str) -> list[str]:
        suffix = f"{queue}.msg"
        return sorted(
            name
            for name in os.listdir(self._folders["in"])
            if name.partition(".")[2] == suffix
        )

    def _read(self, claimed: Path) -> dict[str, Any] | None:
        """The claimed message's payload, or None once it is set aside as unreadable."""
        try:
            payload: dict[str, Any] = loads(bytes_to_str(claimed.read_bytes()))
            # What the consumer does with it next; failing here rather than there
            # keeps the failure from stopping the worker.
            self.Message(payload, channel=self)
        # Truncated or empty files, foreign bytes, JSON of the wrong shape, a body
        # that does not decode: whatever it is, this message cannot be delivered.
        except Exception as exc:
            self._set_aside(claimed, exc)
            return None
        return payload

    def _release(self, delivery_tag: str | None) -> None:
        """The message is done with (acknowledged, rejected, restored): drop its claim."""
        claimed = self._claims.pop(delivery_tag or "", None)
        if claimed is None:
            return
        if self.store_processed:
            os.replace(claimed, self._folders["processed"] / claimed.name)
        else:
            claimed.unlink(missing_ok=True)

    def _get_and_deliver(self, queue: str, callback: Any) -> None:
        payload = self._get(queue)
        callback(payload, queue)
        # A consumer without acknowledgements (Celery's broadcast and reply queues)
        # never acks: its message is done once delivered.
        tag = payload["properties"]["delivery_tag"]
        if tag not in (self.qos._delivered or {}):
            self._release(tag)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack, **kwargs)
        if message is not None and no_ack:
            self._release(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._release(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        self._release(delivery_tag)

    def _restore(self, message: Any) -> None:
        # Written to the queue again first, so a crash in between duplicates the
        # message rather than losing it.
        super()._restore(message)
        self._release(message.delivery_tag)

    def _set_aside(self, claimed: Path, error: Exception) -> None:
        aside = self._folders["unreadable"] / claimed.name
        try:
            os.rename(claimed, aside)
        except OSError:
            logger.exception("could not move unreadable message %s aside", claimed)
            return
        logger.warning(
            "set aside unreadable broker message %s: %s: %s",
            aside,
            type(error).__name__,
            error,
        )

    def _queue_bind(
        self, exchange: str, routing_key: str, pattern: str | None, queue: str
    ) -> None:
        # kombu creates a missing table empty and fills it a moment later, so a
        # process reading it in between fails; create it whole first (link: atomic,
        # and it never replaces a table another process made), then let kombu add
        # the binding under its lock.
        # It also refuses names that would leave the control folder.
        table: Path = self._exchange_file(exchange)  # type: ignore[attr-defined]
        if not table.exists():
            draft = self._folders["staging"] / f"{uuid.uuid4().hex}.exchange"
            draft.write_text("[]")
            try:
                os.link(draft, table)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    """kombu's filesystem transport with the safe channel."""

    Channel = Channel
    driver_type = SCHEME
    driver_name = SCHEME
    # kombu keeps one binding state per process and skips writing a binding it
    # holds; one per control folder keeps connections to two brokers in a process
    # (tests, benchmarks) from skipping each other's bindings.
    states: dict[Path, virtual.BrokerState] = {}

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        control = folders(client.transport_options)["control"].resolve()
        self.state = self.states.setdefault(control, virtual.BrokerState())


@functools.cache
def _boot_id() -> str:
    """This boot's id (Linux), without dashes; "" where the system has none."""
    try:
        return (
            Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
        )
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def register() -> None:
    """Make ``safefs://`` and ``filesystem://`` name this transport in kombu."""
    for scheme in SCHEMES:
        TRANSPORT_ALIASES[scheme] = "controlplane.broker:Transport"
