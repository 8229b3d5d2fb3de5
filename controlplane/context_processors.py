from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from controlplane.roles import role_of

NAVIGATION = [
    ("Fleet", "runners:fleet"),
    ("Deploys", "deploys:run-list"),
    ("Secrets", "deploys:secret-list"),
    ("Runbooks", "runbooks:index"),
    ("Audit", "audit-list"),
]


def navigation(request: HttpRequest) -> dict[str, Any]:
    return {"navigation": NAVIGATION, "user_role": role_of(request.user).label}
