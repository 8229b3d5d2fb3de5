"""A GitHub simulator: the REST API subset the control plane uses, runners, jobs, webhooks.

``python -m githubsim serve`` runs it; ``python -m githubsim ctl`` drives its control API;
tests use :class:`Simulator` in-process.
"""

from __future__ import annotations

from githubsim.clock import SimClock
from githubsim.errors import ApiError
from githubsim.secretstore import (
    environment_scope,
    organization_scope,
    repository_scope,
)
from githubsim.simulator import Simulator
from githubsim.state import SimState

__all__ = [
    "ApiError",
    "SimClock",
    "SimState",
    "Simulator",
    "environment_scope",
    "organization_scope",
    "repository_scope",
]
