"""Inventory settings, from the environment (``controlplane.env`` helpers).

Read through the accessors below, which prefer a Django setting of the same name,
so tests and deployments can override them either way.
"""

from __future__ import annotations

import os

from django.conf import settings

from controlplane.env import envint

# A file holding the fleet's intended inventory (Ansible INI or YAML, or a plain
# list of runner names), re-read by beat when its content changes. Empty: the
# inventory is loaded by admins only (admin upload, API).
_PATH = os.getenv("INVENTORY_PATH", "")
# auto | ini | yaml | list: how to read the file (auto: by its extension, then by
# its content).
_FORMAT = os.getenv("INVENTORY_FORMAT", "auto")
# The host variable naming a host's runner; a host without it is a runner named
# after the host.
_RUNNER_VAR = os.getenv("INVENTORY_RUNNER_VAR", "runner_name")
# The host variable listing a runner's expected labels (a list, or a string of
# comma-separated labels); a host without it has its labels left unchecked.
_LABELS_VAR = os.getenv("INVENTORY_LABELS_VAR", "runner_labels")
# Only the hosts of this group (and of its children) are runners; empty: every host.
_RUNNER_GROUP = os.getenv("INVENTORY_RUNNER_GROUP", "")
# The largest inventory accepted, in bytes.
_MAX_BYTES = envint("INVENTORY_MAX_BYTES", 2_000_000, minimum=1_000)


def path() -> str:
    return str(getattr(settings, "INVENTORY_PATH", _PATH))


def file_format() -> str:
    return str(getattr(settings, "INVENTORY_FORMAT", _FORMAT))


def runner_var() -> str:
    return str(getattr(settings, "INVENTORY_RUNNER_VAR", _RUNNER_VAR))


def labels_var() -> str:
    return str(getattr(settings, "INVENTORY_LABELS_VAR", _LABELS_VAR))


def runner_group() -> str:
    return str(getattr(settings, "INVENTORY_RUNNER_GROUP", _RUNNER_GROUP))


def max_bytes() -> int:
    return int(getattr(settings, "INVENTORY_MAX_BYTES", _MAX_BYTES))
