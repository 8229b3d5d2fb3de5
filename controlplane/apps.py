from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate

from controlplane.schedules import SCHEDULES
from controlplane.schedules import register as register_schedules


class ControlPlaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "Control plane"

    def ready(self) -> None:
        # Imported once the app registry is ready: it imports models.
        from controlplane.schedule_sync import sync_after_migrate

        register_schedules(*SCHEDULES)
        # Once per migrate (sender): every app's migrations and entries are in.
        post_migrate.connect(sync_after_migrate, sender=self)
