"""WSGI entry point for gunicorn."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

django_application = get_wsgi_application()

# Runner heartbeats (the hottest path) are answered before Django's request handling;
# imported here because the runners app needs Django set up first.
from runners.heartbeat import HeartbeatApp  # noqa: E402

application = HeartbeatApp(django_application)
