"""The runner page's trust override card: its form and what it shows (the views
are in ``runners.views``; ``runners.trust`` does the work)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest
from django.utils import timezone

from controlplane.roles import Role, has_role
from runners.models import Runner

HOUR_CHOICES = [(1, "1 hour"), (2, "2 hours"), (4, "4 hours"), (8, "8 hours")] + [
    (12, "12 hours"),
    (24, "24 hours (the longest)"),
]


class TrustForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        strip=True,
        help_text="Why deploys may go to it whatever its health (shown on every "
        "page that shows the runner, kept in the audit log).",
        widget=forms.TextInput(
            attrs={"placeholder": "e.g. exporter behind a firewall, INC-1234"}
        ),
    )
    hours = forms.TypedChoiceField(choices=HOUR_CHOICES, coerce=int, initial=4)


def context(
    request: HttpRequest, runner: Runner, form: TrustForm | None = None
) -> dict[str, Any]:
    """What the runner page's trust card shows (the eligibility it gives, per
    environment, is on the page's top card: ``runners.placement``)."""
    now = timezone.now()
    return {
        "trust_form": form or TrustForm(),
        "can_trust": has_role(request.user, Role.SRE),
        "trust_expired": runner.trusted_until is not None
        and not runner.trusted_at_now(now),
    }
