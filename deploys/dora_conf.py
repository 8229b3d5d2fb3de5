"""Deploy outcome (DORA) settings, from the environment (``controlplane.env``
helpers), read through accessors that prefer a Django setting of the same name.
(Here rather than in ``controlplane/settings.py``, which is at its size limit.)"""

from __future__ import annotations

from django.conf import settings

from controlplane.env import envint

# Days of deploy history the figures cover, on the environment page and in /metrics.
_WINDOW_DAYS = envint("DORA_WINDOW_DAYS", 30, minimum=1)


def window_days() -> int:
    return int(getattr(settings, "DORA_WINDOW_DAYS", _WINDOW_DAYS))
