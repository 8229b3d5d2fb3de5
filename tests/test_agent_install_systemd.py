"""The agent installer's systemd paths, run for real by sh against a fake host root:
``systemctl``, ``loginctl``, ``sudo`` and ``id`` are stubs on PATH that record their
calls, everything else is the real tool. The fallback order is system timer, then
``systemd --user`` timer, then crontab; the token stays in its private file; the
written units pass ``systemd-analyze verify`` when it is installed."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.test_agent_install import AGENT, INSTALLER

TOKEN = "rhb_" + "SystemdPathToken0Never0Printed"  # noqa: S105
URL = "http://127.0.0.1:9"
TOOLS = (
    "sh",
    "cat",
    "cp",
    "dirname",
    "mkdir",
    "chmod",
    "install",
    "grep",
    "printf",
    "true",
    "basename",
    # What the agent's first heartbeat runs in the user-level paths.
    "awk",
    "curl",
    "date",
    "df",
    "head",
    "readlink",
    "sed",
    "sleep",
    "tail",
    "tr",
)

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS), reason="needs coreutils"
)


def stub(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


class Host:
    """A fake root and a PATH of real tools and recording stubs.

    ``uid`` is what ``id -u`` answers; ``sudo`` says whether passwordless sudo
    works; ``user_manager`` whether ``systemctl --user`` reaches a user manager;
    ``booted`` whether the root looks booted with systemd (/run/systemd/system)."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        uid: int = 1001,
        sudo: bool = False,
        user_manager: bool = True,
        booted: bool = True,
    ) -> None:
        self.root = tmp_path / "root"
        self.home = self.root / "home/runner"
        self.home.mkdir(parents=True)
        for folder in ("usr/local/bin", "etc/systemd/system", "etc/default"):
            (self.root / folder).mkdir(parents=True)
        if booted:
            (self.root / "run/systemd/system").mkdir(parents=True)
        self.calls = tmp_path / "calls.log"
        self.calls.touch()
        self.tools = tmp_path / "bin"
        self.tools.mkdir()
        for tool in TOOLS:
            (self.tools / tool).symlink_to(shutil.which(tool) or tool)
        log = f'echo "$(basename "$0") $*" >> "{self.calls}"'
        # `systemctl --user show-environment` is how the installer asks whether a
        # user manager runs; every other call succeeds.
        user_answer = "exit 0" if user_manager else "exit 1"
        stub(
            self.tools / "systemctl",
            f'{log}\n[ "$*" = "--user show-environment" ] && {user_answer}\nexit 0',
        )
        stub(self.tools / "loginctl", f"{log}\nexit 0")
        stub(self.tools / "crontab", f'{log}\n[ "$1" = -l ] && exit 1\ncat >/dev/null')
        stub(
            self.tools / "id",
            f'[ "$1" = -u ] && echo {uid} && exit 0\n[ "$1" = -un ] && echo runner',
        )
        if sudo:
            # Passwordless sudo: drop -n and run the command as it is.
            stub(self.tools / "sudo", f'{log}\n[ "$1" = -n ] && shift\nexec "$@"')

    def install(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.tools / "sh"), str(INSTALLER)],
            env={
                "PATH": str(self.tools),
                "HOME": "/home/runner",
                "HOST_ROOT": str(self.root),
                "AGENT_SOURCE": str(AGENT),
                "HEARTBEAT_TOKEN": TOKEN,
                "CONTROLPLANE_URL": URL,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def systemctl_calls(self) -> list[str]:
        return [
            line
            for line in self.calls.read_text().splitlines()
            if line.startswith("systemctl ")
        ]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("via_sudo", [False, True], ids=["root", "sudo"])
def test_system_timer_when_the_job_may_write_system_units(
    tmp_path: Path, via_sudo: bool
) -> None:
    host = Host(tmp_path, uid=1001 if via_sudo else 0, sudo=via_sudo)

    result = host.install()

    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert "installed the system timer runner-heartbeat.timer" in result.stdout
    assert "first heartbeat recorded" in result.stdout
    units = host.root / "etc/systemd/system"
    for unit in ("runner-heartbeat.service", "runner-heartbeat.timer"):
        assert (units / unit).read_text() == (AGENT / unit).read_text()
        assert mode(units / unit) == 0o644
    agent = host.root / "usr/local/bin/runner-heartbeat"
    assert agent.read_bytes() == (AGENT / "runner-heartbeat").read_bytes()
    assert mode(agent) == 0o755
    token = host.root / "etc/runner-heartbeat/token"
    assert token.read_text() == TOKEN + "\n"
    assert mode(token) == 0o600
    assert mode(token.parent) == 0o700
    defaults = (host.root / "etc/default/runner-heartbeat").read_text()
    assert defaults == (
        f"CONTROLPLANE_URL={URL}\nRUNNER_DIR=/home/runner/actions-runner\n"
    )
    calls = [
        "daemon-reload",
        "enable --now runner-heartbeat.timer",
        "restart runner-heartbeat.timer",
        "start runner-heartbeat.service",
    ]
    assert host.systemctl_calls() == [f"systemctl {call}" for call in calls]
    if via_sudo:
        through_sudo = host.calls.read_text().splitlines()
        assert "sudo -n true" in through_sudo
        for call in calls:
            assert f"sudo -n systemctl {call}" in through_sudo
    # Nothing user-level was written, no crontab touched, no lingering asked.
    assert not (host.home / ".config").exists()
    assert "crontab" not in host.calls.read_text()
    assert "loginctl" not in host.calls.read_text()
    assert TOKEN not in host.calls.read_text()
    verify(host.root, ["/etc/systemd/system/runner-heartbeat.service"])


def test_user_timer_when_system_units_are_not_allowed(tmp_path: Path) -> None:
    host = Host(tmp_path)

    result = host.install()

    # Nothing listens at URL: installed, the first heartbeat failed.
    assert result.returncode == 1
    assert "installed, but the first heartbeat failed" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert "installed the user timer runner-heartbeat.timer" in result.stdout
    units = host.home / ".config/systemd/user"
    conf = "/".join(("", "home/runner/.config/runner-heartbeat"))
    service = (units / "runner-heartbeat.service").read_text()
    assert f"EnvironmentFile={host.root}{conf}/env\n" in service
    assert f"ExecStart={host.home}/.local/bin/runner-heartbeat\n" in service
    assert "Type=oneshot" in service
    assert TOKEN not in service
    timer = units / "runner-heartbeat.timer"
    assert timer.read_text() == (AGENT / "runner-heartbeat.timer").read_text()
    token = host.home / ".config/runner-heartbeat/token"
    assert token.read_text() == TOKEN + "\n"
    assert mode(token) == 0o600
    assert mode(token.parent) == 0o700
    assert TOKEN not in (token.parent / "env").read_text()
    assert host.systemctl_calls() == [
        "systemctl --user show-environment",
        "systemctl --user daemon-reload",
        "systemctl --user enable --now runner-heartbeat.timer",
        "systemctl --user restart runner-heartbeat.timer",
    ]
    assert "loginctl enable-linger" in host.calls.read_text().splitlines()
    assert "crontab" not in host.calls.read_text()
    # The system units are untouched: the job may not write them.
    assert list((host.root / "etc/systemd/system").iterdir()) == []
    assert TOKEN not in host.calls.read_text()
    verify(host.root, [str(units / "runner-heartbeat.service")], user=True)


@pytest.mark.parametrize(
    ("uid", "booted"),
    [(1001, True), (0, False)],
    ids=["no-user-manager", "root-but-not-booted-with-systemd"],
)
def test_crontab_when_neither_systemd_path_is_open(
    tmp_path: Path, uid: int, booted: bool
) -> None:
    host = Host(tmp_path, uid=uid, booted=booted, user_manager=False)

    result = host.install()

    assert TOKEN not in result.stdout + result.stderr
    assert "installed a crontab line for runner" in result.stdout
    assert host.systemctl_calls() == ["systemctl --user show-environment"]
    assert "crontab -" in host.calls.read_text().splitlines()
    assert not (host.home / ".config/systemd").exists()
    assert list((host.root / "etc/systemd/system").iterdir()) == []


def verify(root: Path, units: list[str], *, user: bool = False) -> None:
    """``systemd-analyze verify`` of the written units, when it is installed: the
    system units under ``root`` (their ExecStart must exist there), the user units
    by their path."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    argv = [analyze, "verify", "--man=no", "--recursive-errors=no"]
    env = {"PATH": "/usr/bin:/bin"}
    if user:
        # A user manager's runtime folder, which this machine may not have.
        runtime = root.parent / "run-user"
        runtime.mkdir(mode=0o700, exist_ok=True)
        argv += ["--user"]
        env["XDG_RUNTIME_DIR"] = str(runtime)
    else:
        argv += [f"--root={root}"]
    result = subprocess.run(
        [*argv, *units],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
