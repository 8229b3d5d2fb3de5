"""Break glass: an admin's deploy, with a reason, past a freeze window, the deploy
rules (``deploys.rules``), the environment's approvals in the control plane, or a
JIRA that cannot check the change ticket (``deploys.request_ticket``). Recorded on
the deploy's timeline (``break_glass``, whose detail names what was broken:
``freeze`` and ``window``, ``rules``, ``signoffs_skipped``, ``jira_unverified`` with
``change_ticket``) and audited as ``deploy.break_glass``; the gate lets such a run
past what was broken only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from controlplane import audit
from deploys.models import DeployEvent, DeployRun, FreezeWindow
from deploys.rules import Refusal


@dataclass(frozen=True)
class BreakGlass:
    """What an admin's break-glass breaks: the freeze window in force, the deploy
    rules that refused the request, the approvals it skips (how many), and/or the
    JIRA check of the change ticket (what JIRA answered instead)."""

    freeze: FreezeWindow | None = None
    signoffs_skipped: int = 0
    rules: tuple[Refusal, ...] = ()
    jira_unverified: str = ""

    @property
    def breaks_anything(self) -> bool:
        return self.freeze is not None or bool(
            self.signoffs_skipped or self.rules or self.jira_unverified
        )

    def with_rules(self, broken: list[Refusal]) -> BreakGlass:
        return dataclasses.replace(self, rules=tuple(broken))

    def past_jira(self, error: str) -> BreakGlass:
        return dataclasses.replace(self, jira_unverified=error)

    def record(self, user: User | AnonymousUser, run: DeployRun, reason: str) -> None:
        """The ``break_glass`` event (what the gate and the pages read) and the
        ``deploy.break_glass`` audit row, in the caller's transaction."""
        things = [] if self.freeze is None else ["freeze"]
        things += [refusal.name for refusal in self.rules]
        parts = [f"{' and '.join(things)} broken"] if things else []
        detail: dict[str, Any] = {}
        facts: dict[str, Any] = {}
        if self.freeze is not None:
            detail.update(freeze=self.freeze.reason, window=self.freeze.pk)
            facts["freeze"] = self.freeze.reason
        if self.rules:
            detail["rules"] = facts["rules"] = [r.code for r in self.rules]
        if self.signoffs_skipped:
            parts.append("approvals in the control plane skipped")
            detail.update(
                signoffs_skipped=self.signoffs_skipped,
                by=run.requester_name,
                reason=reason,
            )
            facts["signoffs_skipped"] = self.signoffs_skipped
        if self.jira_unverified:
            ticket = run.change_ticket
            parts.append(
                f"change ticket {ticket} not checked: JIRA unavailable "
                f"({self.jira_unverified})"
            )
            detail.update(jira_unverified=self.jira_unverified, change_ticket=ticket)
            facts.update(jira_unverified=self.jira_unverified, change_ticket=ticket)
        DeployEvent.objects.create(
            run=run,
            kind=DeployEvent.Kind.BREAK_GLASS,
            message=f"{' and '.join(parts)} by {run.requester_name}: {reason}",
            detail=detail,
            created_at=run.created_at,
        )
        audit.record(user, "deploy.break_glass", run, **facts, reason=reason)
