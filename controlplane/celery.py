"""The Celery application: configured from Django settings (``CELERY_*``)."""

from __future__ import annotations

import os

from celery import Celery

from controlplane import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
# Every process (web, worker, beat, manage.py) imports this module before it opens
# a broker connection, so none can resolve "filesystem://" to kombu's unsafe one.
broker.register()

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
