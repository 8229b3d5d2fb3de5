"""The exporter probe against the simulator's node_exporter pages over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from controlplane.models import TaskStatus
from githubsim import Simulator
from runners import health, probe
from runners.models import Flag, HealthSample, Reason, Runner, State
from runners.tasks import probe_exporters

pytestmark = [pytest.mark.django_db, pytest.mark.sim(time_scale=1, seed=5)]

NODE_EXPORTER = """\
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1000.5
node_cpu_seconds_total{cpu="0",mode="user"} 20.1
node_cpu_seconds_total{cpu="1",mode="idle"} 990.2
node_cpu_seconds_total{cpu="1",mode="user"} 30.7
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1e+09
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 8e+09
# HELP node_filesystem_size_bytes Filesystem size in bytes.
# TYPE node_filesystem_size_bytes gauge
node_filesystem_size_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1e+09
node_filesystem_size_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 1e+11
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 5
# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="eth0"} 1.2e+10
"""


def exporter_runner(sim: Simulator, name: str, **kw: Any) -> Runner:
    sim.add_runner(name)
    return Runner.objects.create(
        name=name, exporter_url=f"{sim.url}/_sim/exporter/{name}/metrics", **kw
    )


class Host(BaseHTTPRequestHandler):
    """An exporter that misbehaves on purpose; counts requests in flight."""

    lock = threading.Lock()
    in_flight = 0
    most_in_flight = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
        try:
            if self.path == "/slow":
                time.sleep(1.0)
            if self.path == "/busy":
                time.sleep(0.05)
        finally:
            # Out of flight before the answer goes out: once the client has it,
            # it may send the next request before this thread runs again.
            with cls.lock:
                cls.in_flight -= 1
        if self.path == "/error":
            self.send_response(500)
            self.end_headers()
            return
        body = {
            "/garbage": b"node_load1 not-a-number\n",
            "/empty": b"# nothing here\n",
        }.get(self.path, NODE_EXPORTER.encode())
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def host() -> Iterator[str]:
    Host.in_flight = Host.most_in_flight = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Host)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_node_exporter_text_is_judged_on_the_root_filesystem_and_load_per_cpu() -> None:
    reading = probe.parse_exporter(NODE_EXPORTER)
    assert reading.ok
    # 8 % free on "/" (the tmpfs on /run is ignored); load 5 on 2 CPUs = 2.5 per CPU.
    assert reading.problems == Flag.DISK_LOW | Flag.LOAD_HIGH
    assert reading.detail == {
        "disk_free_percent": 8.0,
        "load1": 5.0,
        "cpus": 2,
        "load_per_cpu": 2.5,
    }


def test_thresholds_come_from_settings(settings: Any) -> None:
    settings.DISK_FREE_MIN_PERCENT = 5.0
    settings.LOAD_PER_CPU_MAX = 3.0
    assert probe.parse_exporter(NODE_EXPORTER).problems == Flag(0)


def test_exporter_without_host_metrics_answers_but_judges_nothing() -> None:
    reading = probe.parse_exporter("# nothing here\nup 1\n")
    assert reading.ok
    assert reading.problems == Flag(0)
    assert len(reading.detail["missing"]) == 3


def test_healthy_host_is_recorded_on_the_runner_with_a_first_sample(
    sim: Simulator,
) -> None:
    runner = exporter_runner(sim, "build-1")
    now = timezone.now()
    result = probe.probe_fleet(now)
    assert (result.probed, result.ok, result.unreachable) == (1, 1, 0)
    runner.refresh_from_db()
    assert runner.exporter_ok is True
    assert runner.exporter_problems == 0
    assert runner.exporter_checked_at == now
    assert runner.exporter_detail["disk_free_percent"] == 60.0
    assert runner.exporter_detail["cpus"] == 4
    assert runner.exporter_detail["load_per_cpu"] == 0.062
    sample = HealthSample.objects.get(runner=runner)
    assert (sample.source, sample.ok) == ("exporter", True)
    assert sample.latency_ms is not None


def test_full_disk_and_high_load_are_problems(sim: Simulator) -> None:
    disk = exporter_runner(sim, "disk-1")
    load = exporter_runner(sim, "load-1")
    sim.fill_disk("disk-1", free_percent=3.0)
    sim.set_load("load-1", 9.0)  # 4 CPUs: 2.25 per CPU
    result = probe.probe_fleet()
    assert result.problems == 2
    disk.refresh_from_db()
    load.refresh_from_db()
    assert (disk.exporter_ok, disk.exporter_problems) == (True, int(Flag.DISK_LOW))
    assert (load.exporter_ok, load.exporter_problems) == (True, int(Flag.LOAD_HIGH))
    sample = HealthSample.objects.get(runner=disk)
    assert sample.ok is False
    assert sample.detail["problems"] == ["disk_low"]


def test_dead_host_is_unreachable(sim: Simulator) -> None:
    runner = exporter_runner(sim, "dead-1")
    sim.kill("dead-1")
    result = probe.probe_fleet()
    assert result.unreachable == 1
    runner.refresh_from_db()
    assert runner.exporter_ok is False
    assert runner.exporter_detail["error"] == "connection failed"
    assert HealthSample.objects.get(runner=runner).ok is False


def test_slow_failing_and_garbled_exporters_are_unreachable(host: str) -> None:
    for path in ("slow", "error", "garbage"):
        Runner.objects.create(name=path, exporter_url=f"{host}/{path}")
    probe.probe_fleet(timeout=0.2)
    errors = dict(Runner.objects.values_list("name", "exporter_detail__error"))
    assert errors["slow"] == "no answer within 0.2 s"
    assert errors["error"] == "HTTP 500"
    assert errors["garbage"].startswith("unparseable metrics")
    assert not Runner.objects.filter(exporter_ok=True).exists()


def test_probes_run_concurrently_up_to_the_bound(host: str) -> None:
    for i in range(12):
        Runner.objects.create(name=f"busy-{i}", exporter_url=f"{host}/busy")
    result = probe.probe_fleet(concurrency=3)
    assert result.ok == 12
    assert Host.most_in_flight == 3


def test_runners_without_exporter_or_removed_are_skipped(sim: Simulator) -> None:
    exporter_runner(sim, "probed-1")
    Runner.objects.create(name="no-exporter")
    gone = exporter_runner(sim, "gone-1", removed_at=timezone.now())
    result = probe.probe_fleet()
    assert (result.probed, result.without_exporter) == (1, 1)
    gone.refresh_from_db()
    assert gone.exporter_checked_at is None


def test_sample_is_written_only_when_the_verdict_changes(sim: Simulator) -> None:
    runner = exporter_runner(sim, "flappy-1")
    probe.probe_fleet()
    probe.probe_fleet()
    assert HealthSample.objects.filter(runner=runner).count() == 1
    sim.fill_disk("flappy-1", free_percent=2.0)
    probe.probe_fleet()
    probe.probe_fleet()
    samples = list(HealthSample.objects.filter(runner=runner).order_by("pk"))
    assert [s.ok for s in samples] == [True, False]


@pytest.mark.parametrize("size", [3, 40])
def test_probe_costs_the_same_queries_at_two_fleet_sizes(
    size: int, sim: Simulator, django_assert_num_queries: Any
) -> None:
    for i in range(size):
        exporter_runner(sim, f"r-{i}")
    # Targets, runners without an exporter, one bulk UPDATE, one INSERT of samples.
    with django_assert_num_queries(4):
        assert probe.probe_fleet().ok == size


def test_exporter_problem_reaches_the_health_sweep(sim: Simulator) -> None:
    runner = exporter_runner(sim, "disk-2", state=State.HEALTHY, reason="")
    sim.fill_disk("disk-2", free_percent=1.0)
    now = timezone.now()
    probe.probe_fleet(now)
    for step in range(3):
        health.sweep(now + timedelta(seconds=5 * step))
    runner.refresh_from_db()
    assert (runner.state, runner.reason) == (State.DEGRADED, Reason.DISK_LOW)


def test_probe_task_records_its_run(sim: Simulator) -> None:
    exporter_runner(sim, "task-1")
    probe_exporters()
    assert Runner.objects.get().exporter_ok is True
    assert TaskStatus.objects.get(name="exporter_probe").last_success_at is not None
