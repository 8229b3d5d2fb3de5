"""GitHub REST endpoints the control plane uses, answered in GitHub's shapes.

One module per resource, each with its own router; :data:`router` joins them in a fixed
order (a literal path such as ``.../secrets/public-key`` must come before ``{name}``).
"""

from __future__ import annotations

import json
from typing import Any

from githubsim.api import (
    app,
    commits,
    environments,
    hooks,
    protection_rules,
    repos,
    runners,
    runs,
    secrets,
)
from githubsim.routing import Router

router = Router()
for part in (
    repos,
    commits,
    runners,
    runs,
    hooks,
    secrets,
    protection_rules,
    environments,
    app,
):
    router.include(part.router)


def encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()
