"""Recovery after an outage: how many 5-minute passes and API requests it takes to have
every missed webhook delivery redelivered.

    python -m bench.webhook_recovery --missed 1000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_webhooks \\
        python -m bench.webhook_recovery --missed 1000

An in-process GitHub simulator's hook log holds ``--missed`` failed deliveries (the
control plane was down). The control plane is back: the hook now points at a small
receiver that accepts everything. Passes of :func:`deploys.webhook_recovery.recover`
run at default settings (``WEBHOOK_RECOVERY_MAX_REQUESTS`` unless overridden), one
per simulated 5 minutes, until a pass finds nothing missed. Reports the passes, the
GitHub requests (log pages and redeliveries), and the time each pass took.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench import database_url, emit, setup_django

TOKEN = "bench-webhook-recovery-token"  # noqa: S105 - the simulator accepts any token
PASS_INTERVAL = timedelta(minutes=5)


class Accept(BaseHTTPRequestHandler):
    """The control plane, back up: answers every delivery 202."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--missed", type=int, default=1000)
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--max-passes", type=int, default=200)
    args = parser.parse_args()

    from githubsim import Simulator
    from githubsim.webhooks import HOOK_ID

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with Simulator(time_scale=1, seed=1) as sim:
        os.environ.update(
            GITHUB_API_URL=sim.url,
            GITHUB_TOKEN=TOKEN,
            GITHUB_REPOSITORY="acme/deploy",
            GITHUB_ORGANIZATION="",
            GITHUB_WEBHOOK_HOOK_ID=str(HOOK_ID),
        )
        if args.max_requests is not None:
            os.environ["WEBHOOK_RECOVERY_MAX_REQUESTS"] = str(args.max_requests)
        setup_django(database_url())
        from django.conf import settings
        from django.utils import timezone

        from deploys import webhook_recovery

        for number in range(args.missed):
            sim.state.log_delivery(
                guid=str(uuid.uuid4()),
                event="workflow_job",
                payload={"action": "completed", "number": number},
                redelivery=False,
                status_code=0,
                status="failed to connect to host",
                duration=0.0,
                request_headers={},
                response_headers={},
                response_body="",
            )
        port = receiver.server_address[1]
        sim.set_webhook(f"http://127.0.0.1:{port}/github/webhook", "s")
        assert sim.webhooks.wait_idle(30)
        budget_before = sim.state.limits.budget(TOKEN)[1]
        requests_before = sim.state.request_count()

        passes: list[dict[str, Any]] = []
        now = timezone.now()
        started = time.perf_counter()
        for _ in range(args.max_passes):
            pass_started = time.perf_counter()
            result = webhook_recovery.recover(now)
            seconds = time.perf_counter() - pass_started
            assert sim.webhooks.wait_idle(120)
            passes.append(
                {
                    "seconds": round(seconds, 3),
                    "requests": result.requests,
                    "missed": result.missed,
                    "redelivered": result.redelivered,
                    "complete": result.complete,
                }
            )
            if result.missed == 0:
                break
            now += PASS_INTERVAL
        total = time.perf_counter() - started

        still_failed = {
            r["guid"] for r in sim.state.deliveries() if r["status_code"] == 0
        } - {r["guid"] for r in sim.state.deliveries() if r["status_code"] == 202}
        emit(
            {
                "missed": args.missed,
                "max_requests_per_pass": settings.WEBHOOK_RECOVERY_MAX_REQUESTS,
                # The last pass only confirms that nothing is missing any more.
                "passes": len(passes),
                "simulated_minutes": (len(passes) - 1) * 5,
                "github_requests": sim.state.request_count() - requests_before,
                "budget_spent": budget_before - sim.state.limits.budget(TOKEN)[1],
                "redelivered": sum(p["redelivered"] for p in passes),
                "still_missing": len(still_failed),
                "seconds": round(total, 3),
                "max_pass_seconds": max(p["seconds"] for p in passes),
                "first_passes": passes[:3],
            }
        )
    receiver.shutdown()


if __name__ == "__main__":
    main()
