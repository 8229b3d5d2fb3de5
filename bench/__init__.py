"""Benchmarks: each ``python -m bench.NAME`` prints one JSON object as its last line.

Shared set-up: point Django at ``DATABASE_URL`` (a scratch database the benchmark
may fill and empty), create it if it is a PostgreSQL database that does not exist
yet, and migrate it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any
from urllib.parse import urlsplit


def database_url(default: str | None = None) -> str:
    """``DATABASE_URL``, else ``default``, else a fresh SQLite file in a temp dir."""
    url = os.environ.get("DATABASE_URL") or default
    if not url:
        folder = tempfile.mkdtemp(prefix="bench-")
        url = f"sqlite:///{folder}/bench.sqlite3"
    return url


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` if it is missing."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return
    import psycopg
    from psycopg import sql

    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django(url: str) -> None:
    """Configure and start Django on ``url``, migrated."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    ensure_database(url)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def emit(result: dict[str, Any]) -> None:
    """Print the benchmark's result: one JSON object on the last line."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
