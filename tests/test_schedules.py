"""Periodic tasks declared in code reach beat's rows after migrate; admins' edits
stay."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from controlplane.celery import app
from controlplane.models import CodeSchedule
from controlplane.schedule_sync import row_values, sync
from controlplane.schedules import Schedule, register, table

pytestmark = pytest.mark.django_db

SWEEP = "Runner health sweep"


def sweep() -> PeriodicTask:
    return PeriodicTask.objects.select_related("interval").get(name=SWEEP)


def test_every_declared_task_is_a_celery_task_and_every_row_is_declared() -> None:
    names = {schedule.name for schedule in table()}
    assert len(names) == 18
    assert set(PeriodicTask.objects.values_list("name", flat=True)) == names
    # What a worker imports at start: the apps' tasks modules.
    app.loader.import_default_modules()
    for schedule in table():
        assert schedule.task in app.tasks, schedule.task
    # The migrated rows are what the table declares, and recorded as the code's.
    for task in PeriodicTask.objects.select_related("interval", "crontab"):
        assert row_values(task) == CodeSchedule.objects.get(name=task.name).values


def test_a_changed_interval_setting_reaches_the_row_at_the_next_migrate() -> None:
    assert (sweep().interval.every, sweep().expire_seconds) == (5, 5)
    with override_settings(HEALTH_SWEEP_INTERVAL=7):
        call_command("migrate", verbosity=0)
    task = sweep()
    assert (task.interval.every, task.interval.period) == (7, "seconds")
    assert task.expire_seconds == 7
    assert task.enabled
    assert CodeSchedule.objects.get(name=SWEEP).values["schedule"] == "every 7 seconds"


def test_a_second_sync_writes_nothing() -> None:
    before = list(PeriodicTask.objects.values())
    with CaptureQueriesContext(connection) as queries:
        assert sync() == []
    writes = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert writes == []
    assert list(PeriodicTask.objects.values()) == before


def test_an_admin_edit_survives_and_untouched_fields_still_follow_the_code() -> None:
    task = sweep()
    task.interval, _ = IntervalSchedule.objects.get_or_create(
        every=30, period="seconds"
    )
    task.description = "Slowed down during the migration to the new fleet."
    task.save()

    with override_settings(HEALTH_SWEEP_INTERVAL=7):
        lines = sync()
    task = sweep()
    assert (task.interval.every, task.interval.period) == (30, "seconds")
    assert task.description == "Slowed down during the migration to the new fleet."
    assert task.expire_seconds == 7
    assert f"{SWEEP}: schedule kept at 'every 30 seconds'" in lines[0]
    assert "not what the code last wrote (it declares 'every 7 seconds')" in lines[0]

    # Set back to what the code declares, the field is the code's again.
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=7, period="seconds")
    task.save()
    with override_settings(HEALTH_SWEEP_INTERVAL=9):
        sync()
    assert sweep().interval.every == 9
    assert sweep().description.startswith("Slowed down")


def test_an_edit_saved_in_the_admin_survives_migrate(admin_client_: Client) -> None:
    url = f"/admin/django_celery_beat/periodictask/{sweep().pk}/change/"
    form = admin_client_.get(url).context["adminform"].form
    data = {
        name: value
        for name in form.fields
        if (value := form[name].value()) is not None and value is not False
    }
    data["interval"] = IntervalSchedule.objects.create(every=20, period="seconds").pk
    response = admin_client_.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert sweep().interval.every == 20

    with override_settings(HEALTH_SWEEP_INTERVAL=7):
        call_command("migrate", verbosity=0)
    assert (sweep().interval.every, sweep().expire_seconds) == (20, 7)


def test_rows_from_before_the_table_keep_values_that_differ_from_it() -> None:
    # A database migrated before the code recorded what it wrote: a differing value
    # may be an admin's edit, so it is kept; equal ones become the code's.
    CodeSchedule.objects.all().delete()
    PeriodicTask.objects.filter(name=SWEEP).update(expire_seconds=3)
    with override_settings(HEALTH_SWEEP_INTERVAL=5):
        lines = sync()
    kept = "kept at 3, not what the code last wrote (it declares 5)"
    assert lines == [f"{SWEEP}: expire_seconds {kept}"]
    assert CodeSchedule.objects.count() == 18
    with override_settings(HEALTH_SWEEP_INTERVAL=6):
        sync()
    assert (sweep().interval.every, sweep().expire_seconds) == (6, 3)


def test_a_deleted_task_is_created_again_with_its_crontab() -> None:
    PeriodicTask.objects.filter(name="Audit secrets against GitHub").delete()
    assert sync() == ["Audit secrets against GitHub: created"]
    task = PeriodicTask.objects.get(name="Audit secrets against GitHub")
    assert task.crontab is not None
    assert (task.crontab.minute, task.crontab.hour) == ("17", "6")
    assert str(task.crontab.timezone) == "UTC"
    assert (task.task, task.queue, task.enabled) == (
        "deploys.tasks.audit_secrets",
        "health",
        True,
    )


def test_the_table_refuses_ambiguous_entries() -> None:
    with pytest.raises(ImproperlyConfigured, match="either every or crontab"):
        Schedule(name="x", task="t", queue="health", description="")
    with pytest.raises(ImproperlyConfigured, match="five fields"):
        Schedule(name="x", task="t", queue="health", description="", crontab="1 2")
    taken = table()[0]
    register(taken)  # the same entry twice is harmless
    with pytest.raises(ImproperlyConfigured, match="two periodic tasks"):
        register(
            Schedule(name=taken.name, task="t", queue="q", description="", every=1)
        )
