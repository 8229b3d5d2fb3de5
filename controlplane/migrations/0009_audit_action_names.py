"""Audit actions are named ``object.verb`` (controlplane.audit): rows written under
the earlier names are renamed, so that filtering by action finds the whole
history."""

from __future__ import annotations

from typing import Any

from django.db import migrations

RENAMED = {
    "login": "session.login",
    "logout": "session.logout",
    "session-expired": "session.expire",
    "login-lockout": "login.lockout",
    "api-token-lockout": "api_token.lockout",
    "heartbeat-lockout": "heartbeat.lockout",
    "password-change": "user.password_change",
    "user-create": "user.create",
    "token-issue": "api_token.issue",
    "runner.token_rotated": "runner.token_issue",
    "runner.token_revoked": "runner.token_revoke",
    "secret.rotated_externally": "secret.detect_external_rotation",
    "secrets.audit": "secret.audit",
}


def rename(apps: Any, schema_editor: Any) -> None:
    events = apps.get_model("controlplane", "AuditEvent").objects
    for old, new in RENAMED.items():
        events.filter(action=old).update(action=new)


def restore(apps: Any, schema_editor: Any) -> None:
    events = apps.get_model("controlplane", "AuditEvent").objects
    for old, new in RENAMED.items():
        events.filter(action=new).update(action=old)


class Migration(migrations.Migration):
    dependencies = [("controlplane", "0008_code_schedules")]

    operations = [migrations.RunPython(rename, restore)]
