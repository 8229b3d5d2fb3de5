"""``{% runner_hygiene runner %}``: the runner page's version and name-label card,
so the runner page needs one include line and no view changes."""

from __future__ import annotations

from typing import Any

from django import template

from controlplane.runbooks import runbook_url
from runners import hygiene, version_conf, versions
from runners.hygiene_fields import VersionStatus
from runners.models import Runner

register = template.Library()


@register.inclusion_tag("runners/_hygiene.html")
def runner_hygiene(runner: Runner) -> dict[str, Any]:
    release = versions.latest_release() if version_conf.follow_latest() else None
    return {
        "runner": runner,
        "status": VersionStatus(runner.version_outdated),
        "blocks": runner.version_outdated == VersionStatus.BELOW_MINIMUM,
        "minimum": version_conf.minimum(),
        "release": release,
        "behind": version_conf.max_minor_behind(),
        "label_text": hygiene.name_label_text(runner),
        "version_runbook": runbook_url(hygiene.VERSION_RUNBOOK),
        "label_runbook": runbook_url(hygiene.NAME_LABEL_RUNBOOK),
    }
