"""Alert latency end to end: seconds from a runner host's death to a firing alert.

    python -m bench.alert_latency
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_alerts \\
        python -m bench.alert_latency

Starts the simulator, gunicorn, a Celery worker and beat at default settings (see
:mod:`bench._processes`), and the real ``prometheus`` binary on 127.0.0.1 scraping
the control plane every 15 s with the shipped rules
(``monitoring/prometheus/alerts.yml``, evaluated every 15 s). Once Prometheus has
seen the victim healthy, the simulator kills its host; ``alert_seconds`` runs from
the kill until Prometheus' ``/api/v1/alerts`` reports ``RunnerHeartbeatStale``
firing for it. The breakdown says where the time goes: the control plane's
detection (kill to the ``unhealthy`` event), Prometheus seeing it (scrape and
evaluation: the alert turning pending) and the rule's ``for:``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from bench import emit
from bench._processes import ROOT, Stack, free_port, prepare, setup_django, wait_for
from bench._processes import wait_until as _wait_until

RULES = ROOT / "monitoring/prometheus/alerts.yml"
ALERT = "RunnerHeartbeatStale"
VICTIM = "prod-primary-1"
SCRAPE_INTERVAL = "15s"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


class Prometheus:
    """The ``prometheus`` binary with a throwaway config and TSDB in ``folder``."""

    def __init__(self, binary: str, folder: Path, target: str, site_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        config = {
            "global": {
                "scrape_interval": SCRAPE_INTERVAL,
                "evaluation_interval": SCRAPE_INTERVAL,
                "external_labels": {"controlplane_url": site_url},
            },
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "controlplane",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        # JSON is YAML: no YAML writer needed.
        (folder / "prometheus.yml").write_text(json.dumps(config, indent=2))
        self.command = [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        self._log = (self.folder / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT
        )
        if not wait_for(f"{self.url}/-/ready", 30):
            self.__exit__()
            raise RuntimeError("prometheus did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = get_json(f"{self.url}/api/v1/query?query={quote(promql)}")
        return list(answer["data"]["result"])

    def alert(self, name: str, runner: str) -> dict[str, Any] | None:
        for alert in get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]:
            labels = alert["labels"]
            if labels.get("alertname") == name and labels.get("runner") == runner:
                return dict(alert)
        return None


def wait_until(condition: Any, seconds: float, what: str) -> Any:
    return _wait_until(condition, seconds, what, step=0.25)


def measure(stack: Stack, prometheus: Prometheus, timeout: float) -> dict[str, Any]:
    from django.db import close_old_connections

    from runners.models import Runner, RunnerEvent, State

    def healthy_in_prometheus() -> bool:
        close_old_connections()
        in_db = Runner.objects.filter(name=VICTIM, state=State.HEALTHY).exists()
        seen = prometheus.query(
            f'controlplane_runner_state{{runner="{VICTIM}",state="healthy"}} == 1'
        )
        return in_db and bool(seen)

    wait_until(healthy_in_prometheus, timeout, f"Prometheus to see {VICTIM} healthy")
    # Rules evaluate after a scrape has landed, so a quiet start is a real baseline.
    assert prometheus.alert(ALERT, VICTIM) is None, "alert before the kill"
    killed_at = time.time()
    stack.kill_host(VICTIM)
    try:
        firing = wait_until(
            lambda: (
                (a := prometheus.alert(ALERT, VICTIM)) and a["state"] == "firing" and a
            ),
            timeout,
            f"{ALERT} to fire",
        )
    except SystemExit:
        # Say where it stopped: the control plane's verdict or Prometheus' view.
        close_old_connections()
        runner = Runner.objects.get(name=VICTIM)
        seen = prometheus.query(f'controlplane_runner_reason{{runner="{VICTIM}"}}')
        print(
            f"{VICTIM} in the database: {runner.state} ({runner.reason}); "
            f"in Prometheus: {seen}; alert: {prometheus.alert(ALERT, VICTIM)}",
            flush=True,
        )
        raise
    fired_at = time.time()

    close_old_connections()
    runner = Runner.objects.get(name=VICTIM)
    event = runner.events.filter(
        kind=RunnerEvent.Kind.STATE_CHANGE, to_state=State.UNHEALTHY
    ).latest("created_at")
    pending_at = datetime.fromisoformat(
        firing["activeAt"].replace("Z", "+00:00")
    ).timestamp()
    unhealthy_at = event.created_at.timestamp()
    return {
        "alert_seconds": round(fired_at - killed_at, 2),
        "target_seconds": 90,
        "breakdown_seconds": {
            "kill_to_unhealthy": round(unhealthy_at - killed_at, 2),
            "unhealthy_to_pending": round(pending_at - unhealthy_at, 2),
            "pending_to_firing_seen": round(fired_at - pending_at, 2),
        },
        "last_heartbeat_to_unhealthy": round(
            unhealthy_at - runner.last_heartbeat_at.timestamp(), 2
        )
        if runner.last_heartbeat_at
        else None,
        "reason": event.reason,
        "alert": ALERT,
        "scrape_and_evaluation_interval": SCRAPE_INTERVAL,
        "runbook_url": firing["annotations"]["runbook_url"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--prometheus", default=shutil.which("prometheus"))
    args = parser.parse_args()
    if not args.prometheus:
        raise SystemExit("bench.alert_latency: the prometheus binary is not installed")

    var_dir, database_url, env = prepare("alert-latency")
    with Stack(env, var_dir / "processes.log") as stack:
        setup_django(database_url)
        target = urlsplit(stack.web_url).netloc
        folder = var_dir / "prometheus"
        folder.mkdir()
        with Prometheus(args.prometheus, folder, target, stack.web_url) as prometheus:
            result = measure(stack, prometheus, args.timeout)
    result["database"] = database_url.split(":", 1)[0]
    print(f"process logs: {var_dir}", flush=True)
    emit(result)


if __name__ == "__main__":
    main()
