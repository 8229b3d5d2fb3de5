"""The runner application GitHub offers (its newest release, ``Config.runner_version``)
and what hosts change on their runners: the version they run, their custom labels."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from githubsim.errors import ApiError
from githubsim.models import Runner
from githubsim.state.runners import RunnersMixin

VERSION = re.compile(r"^\d+\.\d+\.\d+$")
# (os, architecture, archive) of each download GitHub lists.
PLATFORMS = (
    ("osx", "x64", "tar.gz"),
    ("osx", "arm64", "tar.gz"),
    ("linux", "x64", "tar.gz"),
    ("linux", "arm", "tar.gz"),
    ("linux", "arm64", "tar.gz"),
    ("win", "x64", "zip"),
    ("win", "arm64", "zip"),
)


def check_version(version: str) -> str:
    if not VERSION.match(version):
        raise ApiError(422, f"a runner version looks like 2.330.0, not {version!r}")
    return version


class ReleasesMixin(RunnersMixin):
    """The runner downloads list, and runners updated or relabelled by their hosts."""

    def runner_applications(self) -> list[dict[str, Any]]:
        """GitHub's runner downloads: one per platform of the newest release."""
        version = self.config.runner_version
        base = f"https://github.com/actions/runner/releases/download/v{version}"
        downloads = []
        for os_name, arch, archive in PLATFORMS:
            filename = f"actions-runner-{os_name}-{arch}-{version}.{archive}"
            downloads.append(
                {
                    "os": os_name,
                    "architecture": arch,
                    "download_url": f"{base}/{filename}",
                    "filename": filename,
                    "sha256_checksum": "0" * 64,
                }
            )
        return downloads

    def set_runner_version(self, name: str, version: str) -> Runner:
        """The host runs ``version`` (an update, or one held back by
        ``--disableupdate``): GitHub's runner list and the heartbeat say so."""
        with self.lock:
            runner = self.runner(name)
            runner.version = check_version(version)
            self._bump()
            return runner

    def set_runner_labels(self, name: str, labels: Iterable[str]) -> Runner:
        """Replace the runner's custom labels (its name among them or not), as
        GitHub's "set custom labels" does."""
        with self.lock:
            runner = self.runner(name)
            for label in runner.labels:
                self._label_index.get(label.casefold(), set()).discard(runner.id)
            runner.custom_labels = [label for label in dict.fromkeys(labels) if label]
            for label in runner.labels:
                self._label_index.setdefault(label.casefold(), set()).add(runner.id)
            for label in runner.custom_labels:
                self._custom_label_ids.setdefault(
                    label, 100 + len(self._custom_label_ids)
                )
            self._bump()
            return runner
