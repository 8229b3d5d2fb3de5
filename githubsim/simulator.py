"""The simulator as one object: state, HTTP server, scheduler and senders, started together.

with Simulator(time_scale=60, runners=10) as sim:
    gh = Github(base_url=sim.url, auth=Auth.Token("any"))
    sim.kill("runner-3")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from githubsim import shapes
from githubsim.clock import SimClock
from githubsim.commands import parse_command
from githubsim.heartbeats import HeartbeatSender
from githubsim.models import Config, Faults, Job, Run, Runner, Workflow
from githubsim.server import SimHTTPServer
from githubsim.state import SimState
from githubsim.webhooks import HOOK_ID, WebhookSender
from githubsim.workflows import parse_definition

TICK = 0.05  # real seconds between scheduler passes


class Simulator:
    """A running GitHub simulator with a Python method for every control-API operation."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        runners: int = 0,
        demo: bool = False,
        seed: int | None = None,
        repository: str = "acme/deploy",
        webhook_url: str = "",
        webhook_secret: str = "",
        heartbeat_url: str = "",
        **config: Any,
    ) -> None:
        self.clock = SimClock(time_scale)
        self.state = SimState(
            self.clock, config=Config(**config), seed=seed, repository=repository
        )
        self.demo = demo
        self.initial_runners = runners
        self._host = host
        self._port = port
        self._server: SimHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.webhooks = WebhookSender(self.state)
        self.state.webhook_sink = self.webhooks.enqueue
        self.heartbeats = HeartbeatSender(self.state)
        self._populate()
        self.state.config.heartbeat_url = heartbeat_url
        self._pending_webhook = (webhook_url, webhook_secret)

    def _populate(self) -> None:
        if self.demo:
            self.state.load_demo()
        if self.initial_runners:
            self.state.add_runners(self.initial_runners)

    # Lifecycle ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        """Base URL for clients: ``Github(base_url=sim.url)``."""
        return f"http://{self.address}"

    def start(self) -> Simulator:
        self._server = SimHTTPServer((self._host, self._port), self)
        port = self._server.server_address[1]
        # Webhook payloads carry URLs too; a wildcard address is no place to send clients.
        host = "127.0.0.1" if self._host in ("0.0.0.0", "::", "") else self._host
        self.state.public_url = f"http://{host}:{port}"
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="githubsim-http",
            daemon=True,
        )
        schedule = threading.Thread(
            target=self._schedule, name="githubsim-scheduler", daemon=True
        )
        self._threads = [serve, schedule]
        for thread in self._threads:
            thread.start()
        self.webhooks.start()
        self.heartbeats.start()
        url, secret = self._pending_webhook
        if url:
            self.set_webhook(url, secret)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=2)
        self.heartbeats.stop()
        self.webhooks.stop()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _schedule(self) -> None:
        while not self._stop.wait(TICK):
            self.state.tick()

    def wait_until(self, condition: Callable[[], object], timeout: float = 5.0) -> bool:
        """Poll ``condition`` until it is true or ``timeout`` real seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.01)
        return bool(condition())

    # Control operations ------------------------------------------------------------------

    def add_runner(self, name: str, labels: Iterable[str] = (), **kw: str) -> Runner:
        return self.state.add_runner(name, labels, **kw)

    def add_runners(
        self, count: int, prefix: str = "runner", labels: Iterable[str] = ()
    ) -> list[Runner]:
        return self.state.add_runners(count, prefix, labels)

    def remove_runner(self, name: str) -> None:
        self.state.remove_runner(name)

    def kill(self, name: str) -> Runner:
        return self.state.kill(name)

    def revive(self, name: str) -> Runner:
        return self.state.revive(name)

    def refuse_jobs(self, name: str) -> Runner:
        """The runner stays online and idle for GitHub but never takes a job."""
        return self.state.set_takes_jobs(name, False)

    def take_jobs(self, name: str) -> Runner:
        return self.state.set_takes_jobs(name, True)

    def stop_heartbeats(self, name: str) -> Runner:
        return self.state.set_heartbeats(name, False)

    def start_heartbeats(self, name: str) -> Runner:
        return self.state.set_heartbeats(name, True)

    def set_heartbeat_token(self, name: str, token: str) -> Runner:
        return self.state.set_heartbeat_token(name, token)

    def fill_disk(self, name: str, free_percent: float = 3.0) -> Runner:
        return self.state.fill_disk(name, free_percent)

    def set_load(self, name: str, load1: float) -> Runner:
        return self.state.set_load(name, load1)

    def set_runner_version(self, name: str, version: str) -> Runner:
        return self.state.set_runner_version(name, version)

    def set_runner_labels(self, name: str, labels: Iterable[str]) -> Runner:
        return self.state.set_runner_labels(name, labels)

    def lose_job(self, job_id: int) -> Job:
        return self.state.lose_job(job_id)

    def push(self, ref: str = "main", repository: str | None = None) -> str:
        """A new commit on branch ``ref`` of the default repository; its SHA."""
        return self.state.push(repository or self.state.default_repository, ref).sha

    def create_tag(
        self, tag: str, target: str = "main", repository: str | None = None
    ) -> str:
        """Tag ``target`` (a ref or SHA) as ``tag``; the SHA it points at."""
        repo = repository or self.state.default_repository
        return self.state.create_tag(repo, tag, target)

    def sha_of(self, ref: str, repository: str | None = None) -> str:
        return self.state.resolve_ref(repository or self.state.default_repository, ref)

    def set_workflow(
        self,
        workflow_file: str = "deploy.yml",
        *,
        yaml: str | None = None,
        jobs: list[dict[str, Any]] | None = None,
        repository: str | None = None,
    ) -> Workflow:
        """Define a workflow from its file's text or a job list, as the control API."""
        body: dict[str, Any] = {"yaml": yaml} if yaml is not None else {"jobs": jobs}
        definition = parse_definition(body)
        return self.state.set_workflow(
            repository or self.state.default_repository,
            workflow_file,
            definition.jobs,
            definition.name,
            definition.inputs,
        )

    def set_workflow_command(
        self,
        workflow_file: str,
        command: dict[str, Any] | None,
        *,
        repository: str | None = None,
    ) -> Workflow:
        """Have the workflow's self-hosted jobs run ``command`` (None: stop), as
        ``PUT .../workflows/{file}/command`` (:mod:`githubsim.commands`)."""
        parsed = None if command is None else parse_command(command)
        with self.state.lock:
            flow = self.state.workflow(
                repository or self.state.default_repository, workflow_file
            )
            flow.command = parsed
            return flow

    def start_traffic(
        self,
        *,
        runners: list[str] | None = None,
        labels: list[str] | None = None,
        count: int = 1,
        duration: float | None = None,
    ) -> Run:
        """CI jobs of another workflow keeping runners busy (until stopped by default)."""
        return self.state.start_traffic(
            self.state.default_repository,
            runners=runners,
            labels=labels,
            count=count,
            duration=duration,
        )

    def stop_traffic(self) -> int:
        return self.state.stop_traffic()

    def set_faults(self, **faults: Any) -> Faults:
        """e.g. ``error_rate=0.3, rate_limit_rate=0.1, latency_ms=200``."""
        return self.state.set_faults(**faults)

    def clear_faults(self) -> Faults:
        with self.state.lock:
            self.state.faults = Faults()
            return self.state.faults

    def set_outcome(self, outcome: str) -> None:
        self.state.set_config(outcome=outcome)

    def configure(self, **settings: Any) -> Config:
        """Change timings (``pickup_delay``, ``job_duration``, ``time_scale``, ...)."""
        return self.state.set_config(**settings)

    def set_webhook(self, url: str, secret: str) -> None:
        """Point webhooks somewhere; a new URL first receives a ``ping``."""
        with self.state.lock:
            changed = url != self.state.config.webhook_url
            self.state.config.webhook_url = url
            self.state.config.webhook_secret = secret
            if url and changed:
                self.webhooks.enqueue("ping", self._ping_payload(url))

    def set_heartbeat_url(self, url: str, interval: float | None = None) -> None:
        with self.state.lock:
            self.state.config.heartbeat_url = url
            if interval is not None:
                self.state.config.heartbeat_interval = interval

    def reset(self) -> None:
        """Back to a fresh simulator (the demo fleet again if it started with one)."""
        self.state.reset()
        self._populate()

    def status(self) -> dict[str, Any]:
        return self.state.summary()

    def _ping_payload(self, url: str) -> dict[str, Any]:
        state = self.state
        base = state.public_url
        scope = state.config.webhook_scope
        hook = shapes.hook(
            base, scope, state.hook_owner(scope), HOOK_ID, url, self.clock.now()
        )
        return {
            "zen": "Keep it logically awesome.",
            "hook_id": HOOK_ID,
            "hook": hook,
            "repository": state.repository_json(base, state.default_repository),
            "sender": state.actor(base),
        }
