"""``python -m githubsim serve`` and ``python -m githubsim ctl``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from githubsim.simulator import Simulator

DEFAULT_URL = "http://127.0.0.1:9100"
# The control plane's embedded default, so `dev.py run` works without configuration.
EMBEDDED_WEBHOOK_SECRET = "embedded-webhook-secret"  # noqa: S105
# Runner actions that take nothing but the runner's name.
SIMPLE_ACTIONS = (
    "kill",
    "revive",
    "stop-heartbeats",
    "start-heartbeats",
    "refuse-jobs",
    "take-jobs",
)


def default_webhook_secret() -> str:
    """GITHUB_WEBHOOK_SECRET (or GITHUB_WEBHOOK_SECRET_FILE), as the app reads it."""
    path = os.getenv("GITHUB_WEBHOOK_SECRET_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.getenv("GITHUB_WEBHOOK_SECRET") or EMBEDDED_WEBHOOK_SECRET


def serve(args: argparse.Namespace) -> int:
    sim = Simulator(
        host=args.host,
        port=args.port,
        time_scale=args.time_scale,
        runners=args.runners,
        demo=args.demo,
        webhook_url=args.webhook_url or "",
        webhook_secret=args.webhook_secret or default_webhook_secret(),
        heartbeat_url=args.heartbeat_url or "",
        heartbeat_interval=args.heartbeat_interval,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        sim.start()
    except OSError as exc:
        print(
            f"githubsim: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    summary = sim.status()["runners"]
    print(
        f"githubsim: serving on {sim.url} with {summary['total']} runners "
        f"(time scale {args.time_scale}); Ctrl-C stops",
        flush=True,
    )
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    print("githubsim: stopping", flush=True)
    sim.stop()
    return 0


class ControlError(Exception):
    pass


def call(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("message", exc.reason)
        except ValueError:
            message = exc.reason
        raise ControlError(f"the simulator said no ({exc.code}): {message}") from None
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot reach the simulator at {url}: {exc}") from None
    return json.loads(raw) if raw else None


def ctl(args: argparse.Namespace) -> int:
    c = args.command
    request: tuple[str, str, dict[str, Any] | None]
    if c in SIMPLE_ACTIONS:
        request = ("POST", f"/_sim/runners/{args.runner}/{c}", {})
    elif c == "fill-disk":
        body = {"free_percent": args.free_percent}
        request = ("POST", f"/_sim/runners/{args.runner}/fill-disk", body)
    elif c == "load":
        request = ("POST", f"/_sim/runners/{args.runner}/load", {"load1": args.load1})
    elif c == "set-token":
        request = ("POST", f"/_sim/runners/{args.runner}/token", {"token": args.token})
    elif c == "remove":
        request = ("DELETE", f"/_sim/runners/{args.runner}", None)
    elif c == "add-runners":
        labels = [x for x in (args.labels or "").split(",") if x]
        body = {"count": args.count, "prefix": args.prefix, "labels": labels}
        request = ("POST", "/_sim/runners", body)
    elif c == "lose-job":
        request = ("POST", f"/_sim/jobs/{args.job_id}/lose", {})
    elif c == "faults":
        body = {
            k: v
            for k, v in {
                "error_rate": args.error_rate,
                "rate_limit_rate": args.rate_limit_rate,
                "secondary_rate_limit_rate": args.secondary_rate_limit_rate,
                "too_many_requests_rate": args.too_many_requests_rate,
                "latency_ms": args.latency_ms,
                "reject_return_run_details": args.reject_return_run_details,
            }.items()
            if v is not None
        }
        if args.clear:
            body["clear"] = True
        request = ("POST", "/_sim/faults", body)
    elif c == "outcome":
        request = ("POST", "/_sim/config", {"outcome": args.outcome})
    elif c == "config":
        body = {}
        for pair in args.settings:
            key, _, value = pair.partition("=")
            try:
                body[key] = json.loads(value)
            except ValueError:
                body[key] = value
        request = (
            ("POST", "/_sim/config", body) if body else ("GET", "/_sim/config", None)
        )
    elif c == "workflow":
        path = f"/_sim/repos/{args.repository}/workflows/{Path(args.file).name}"
        request = ("PUT", path, {"yaml": Path(args.file).read_text()})
    elif c == "traffic":
        if args.stop:
            request = ("DELETE", "/_sim/traffic", None)
        else:
            body = {"runners": args.runners, "labels": args.labels, "count": args.count}
            if args.duration is not None:
                body["duration"] = args.duration
            request = ("POST", "/_sim/traffic", body)
    elif c == "jobs":
        request = ("GET", "/_sim/jobs", None)
    elif c == "reset":
        request = ("POST", "/_sim/reset", {})
    else:
        request = ("GET", "/_sim/state", None)
    try:
        answer = call(args.url, *request)
    except ControlError as exc:
        print(f"githubsim ctl: {exc}", file=sys.stderr)
        return 1
    if answer is not None:
        print(json.dumps(answer, indent=2))
    else:
        print("ok")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m githubsim", description=__doc__)
    commands = root.add_subparsers(dest="mode", required=True)

    s = commands.add_parser("serve", help="run the simulator in the foreground")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=9100)
    s.add_argument("--runners", type=int, default=0, help="add N generic runners")
    s.add_argument("--demo", action="store_true", help="load the demo fleet")
    s.add_argument(
        "--time-scale", type=float, default=1.0, help="simulated seconds per second"
    )
    s.add_argument("--webhook-url")
    s.add_argument(
        "--webhook-secret",
        help="default: $GITHUB_WEBHOOK_SECRET, else the control plane's embedded one",
    )
    s.add_argument("--heartbeat-url")
    s.add_argument(
        "--heartbeat-interval", type=float, default=10.0, help="simulated seconds"
    )
    s.set_defaults(func=serve)

    c = commands.add_parser("ctl", help="drive a running simulator")
    c.add_argument("--url", default=os.getenv("GITHUBSIM_URL", DEFAULT_URL))
    c.set_defaults(func=ctl)
    cmds = c.add_subparsers(dest="command", required=True)
    for name in (*SIMPLE_ACTIONS, "remove"):
        cmds.add_parser(name).add_argument("runner")
    p = cmds.add_parser("fill-disk")
    p.add_argument("runner")
    p.add_argument("--free-percent", type=float, default=3.0)
    p = cmds.add_parser("load")
    p.add_argument("runner")
    p.add_argument("--load1", type=float, required=True)
    p = cmds.add_parser("set-token")
    p.add_argument("runner")
    p.add_argument("token")
    p = cmds.add_parser("add-runners")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", default="runner")
    p.add_argument("--labels", default="", help="comma-separated custom labels")
    cmds.add_parser("lose-job").add_argument("job_id", type=int)
    p = cmds.add_parser("faults", help="set injected faults (omitted ones unchanged)")
    p.add_argument("--error-rate", type=float)
    p.add_argument("--rate-limit-rate", type=float)
    p.add_argument("--secondary-rate-limit-rate", type=float)
    p.add_argument("--too-many-requests-rate", type=float)
    p.add_argument("--latency-ms", type=float)
    p.add_argument(
        "--reject-return-run-details",
        action=argparse.BooleanOptionalAction,
        default=None,
    )
    p.add_argument("--clear", action="store_true", help="clear all faults first")
    cmds.add_parser("outcome").add_argument("outcome", choices=["success", "failure"])
    p = cmds.add_parser("config", help="show, or set KEY=VALUE settings")
    p.add_argument("settings", nargs="*")
    p = cmds.add_parser("workflow", help="define a workflow's jobs from its file")
    p.add_argument("file", help="a workflow file, e.g. deploys/workflows/deploy.yml")
    p.add_argument("--repository", default="acme/deploy")
    p = cmds.add_parser(
        "traffic", help="start (or --stop) CI jobs keeping runners busy"
    )
    p.add_argument("runners", nargs="*", help="one CI job on each of these runners")
    p.add_argument("--labels", nargs="*", default=[], help="or jobs on these labels")
    p.add_argument("--count", type=int, default=1, help="jobs on --labels")
    p.add_argument("--duration", type=float, help="seconds; default until stopped")
    p.add_argument("--stop", action="store_true", help="stop all CI traffic")
    cmds.add_parser("jobs")
    cmds.add_parser("reset")
    cmds.add_parser("status")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result
