"""Redaction of anything that looks like a secret, with the host script's patterns.

The diagnostics script redacts on the host before sending; the control plane redacts
every string of a report again on receipt, with the very same patterns (read from
``agent/runner-diagnostics``), so an older or altered script cannot store a secret.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent.parent / "agent" / "runner-diagnostics"


def _load_script() -> Any:
    loader = importlib.machinery.SourceFileLoader("runner_diagnostics", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


script = _load_script()
REDACTED: str = script.REDACTED


def redact(text: str) -> str:
    """``text`` with everything that looks like a secret replaced by [REDACTED]."""
    return str(script.redact(text))


def scrub(value: Any) -> Any:
    """A copy of a JSON value with every string (keys too) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, dict):
        return {redact(str(key)): scrub(item) for key, item in value.items()}
    return value
