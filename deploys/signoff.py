"""Approvals in the control plane ("sign-off"): N SREs approve a deploy before it
is dispatched.

Not GitHub's environment reviewers (``deploys.engine.approval``, which review a job
GitHub already holds): these approvals are given here, on the deploy's page, by the
API (``POST /api/v1/deploys/<id>/approve/`` and ``reject/``) or from the link in the
notification, and the deploy is not dispatched until they are in.

The rules:

- an environment needs ``signoffs_required`` approvals (0: none, the default),
  recorded on each deploy when it is requested, with ``signoff_ttl``;
- approvers have the SRE role and are not the requester (two-person rule);
- an approval counts for ``signoff_ttl`` seconds: one that expires before the
  deploy is dispatched no longer counts, and the deploy waits for a fresh one (its
  approver may approve again);
- one rejection ends the deploy (reason ``rejected``);
- an admin breaking glass with a reason when requesting the deploy skips them (see
  ``deploys.triggers``; the ``break_glass`` event says what was skipped);
- decisions are taken only before the deploy is dispatched: afterwards, cancel it.

:func:`verdict` answers "are this deploy's approvals in, and if not why" for the gate
(``deploys.engine.signoff``), the pages, the API and the deployment protection rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane import audit
from controlplane.models import AuditEvent
from controlplane.roles import Role, has_role
from deploys import enqueue
from deploys.models import DeployEvent, DeployRun, SignOff

Decision = SignOff.Decision
REASON_MAX = 500


@dataclass(frozen=True)
class Approval:
    """One approval that counts now, or did."""

    by: str
    at: datetime
    expires_at: datetime
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "at": self.at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Verdict:
    """Whether a deploy's approvals in the control plane are in, and why not."""

    satisfied: bool
    required: int
    # Approvals that count now, and those that expired before the dispatch.
    approvals: list[Approval] = field(default_factory=list)
    expired: list[Approval] = field(default_factory=list)
    # Who rejected it, with the reason (the deploy then failed: ``rejected``).
    rejected_by: str = ""
    rejection: str = ""
    # "ada-admin: CVE fix" when an admin broke glass and skipped the approvals.
    break_glass: str = ""
    # Who may approve now: "any SRE but alice" ("" when nothing is awaited).
    awaited_from: str = ""
    # The verdict in words: why it may go, or what it waits for.
    why: str = ""

    @property
    def awaited(self) -> bool:
        return bool(self.awaited_from)

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.approvals))

    @property
    def earliest_expiry(self) -> datetime | None:
        return min((a.expires_at for a in self.approvals), default=None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "satisfied": self.satisfied,
            "required": self.required,
            "approvals": [a.as_dict() for a in self.approvals],
            "expired": [a.as_dict() for a in self.expired],
            "rejected_by": self.rejected_by,
            "rejection": self.rejection,
            "break_glass": self.break_glass,
            "awaited_from": self.awaited_from,
            "why": self.why,
        }


def break_glass_skip(run: DeployRun) -> str:
    """ "who: reason" of the break-glass that skipped the deploy's approvals, or ""."""
    for detail in run.events.filter(kind=DeployEvent.Kind.BREAK_GLASS).values_list(
        "detail", flat=True
    ):
        if isinstance(detail, dict) and detail.get("signoffs_skipped"):
            return f"{detail.get('by', '?')}: {detail.get('reason', '')}"
    return ""


def verdict(run: DeployRun, now: datetime) -> Verdict:
    """Are this deploy's approvals in the control plane satisfied at ``now``, and
    if not, why (two queries at most)."""
    required = run.timeout("signoffs_required")
    if required <= 0:
        return Verdict(True, 0, why="no approval in the control plane required")
    glass = break_glass_skip(run)
    if glass:
        return Verdict(
            True,
            required,
            break_glass=glass,
            why=f"approvals skipped: break-glass by {glass}",
        )
    ttl = timedelta(seconds=run.timeout("signoff_ttl"))
    approvals: list[Approval] = []
    expired: list[Approval] = []
    rejected: SignOff | None = None
    for signoff in run.signoffs.order_by("decided_at", "pk"):
        if signoff.decision == Decision.REJECTED:
            rejected = signoff
            continue
        given = Approval(
            signoff.approver_name,
            signoff.decided_at,
            signoff.decided_at + ttl,
            signoff.reason,
        )
        (approvals if given.expires_at > now else expired).append(given)
    if rejected is not None:
        return Verdict(
            False,
            required,
            approvals,
            expired,
            rejected_by=rejected.approver_name,
            rejection=rejected.reason,
            why=f"rejected by {rejected.approver_name}: {rejected.reason}",
        )
    if len(approvals) >= required:
        names = ", ".join(a.by for a in approvals)
        return Verdict(True, required, approvals, expired, why=f"approved by {names}")
    signed = _signed_off_before_dispatch(run)
    if signed is not None:
        # Approvals count until the dispatch: one expiring while the deploy runs
        # (or fails over) takes nothing back.
        return Verdict(
            True,
            required,
            approvals,
            expired,
            why=f"approved by {', '.join(signed)} before the dispatch",
        )
    awaited = (
        "" if run.is_final else "any SRE but " + (run.requester_name or "the requester")
    )
    have = f"{len(approvals)} of {required}"
    if approvals:
        have += " (" + ", ".join(a.by for a in approvals) + ")"
    why = f"awaiting approvals in the control plane: {have}"
    if awaited:
        why += f", from {awaited}"
    if expired:
        why += "; expired: " + ", ".join(a.by for a in expired)
    return Verdict(False, required, approvals, expired, awaited_from=awaited, why=why)


def _signed_off_before_dispatch(run: DeployRun) -> list[str] | None:
    """Who had approved when the gate let the deploy through, once it has been
    dispatched; None before."""
    if not run.attempts.exists():
        return None
    detail = (
        run.events.filter(kind=DeployEvent.Kind.SIGNED_OFF)
        .order_by("-created_at", "-pk")
        .values_list("detail", flat=True)
        .first()
    )
    if not isinstance(detail, dict):
        return None
    return [str(name) for name in detail.get("approvals") or []]


class SignOffRefused(Exception):
    """An approval or rejection that cannot be taken; says what to do instead."""

    def __init__(
        self, message: str, *, status: int = 409, code: str = "refused", field: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


def approve(
    run: DeployRun,
    user: User | AnonymousUser,
    reason: str = "",
    *,
    now: datetime | None = None,
) -> Verdict:
    """Approve the deploy in the control plane (audited ``deploy.signoff_approve``);
    the deploy's verdict afterwards. Wakes the deploy, whose gate goes on once
    enough approvals are in."""
    return _audited(run, user, Decision.APPROVED, reason, now or timezone.now())


def reject(
    run: DeployRun,
    user: User | AnonymousUser,
    reason: str,
    *,
    now: datetime | None = None,
) -> Verdict:
    """Reject the deploy in the control plane, with a reason: it fails with reason
    ``rejected`` (audited ``deploy.signoff_reject``)."""
    return _audited(run, user, Decision.REJECTED, reason, now or timezone.now())


def _audited(
    run: DeployRun,
    user: User | AnonymousUser,
    decision: str,
    reason: str,
    now: datetime,
) -> Verdict:
    """:func:`_decide`; a refusal is audited with outcome ``denied`` and why."""
    try:
        return _decide(run, user, decision, reason, now)
    except SignOffRefused as exc:
        verb = "approve" if decision == Decision.APPROVED else "reject"
        audit.record(
            user,
            f"deploy.signoff_{verb}",
            run,
            outcome=AuditEvent.Outcome.DENIED,
            code=exc.code,
            reason=exc.message,
        )
        raise


def _decide(
    run: DeployRun,
    user: User | AnonymousUser,
    decision: str,
    reason: str,
    now: datetime,
) -> Verdict:
    """1. Check the person (an SRE, not the requester) and the reason.
    2. Lock the deploy's row, so decisions on one deploy (and the gate's dispatch
       claim, which updates the row) happen one after the other, and check the
       deploy still awaits approvals (not finished, not dispatched, not skipped).
    3. Record the decision (an approval whose earlier one expired is renewed), its
       event and audit row; a rejection finishes the deploy.
    """
    reason = reason.strip()
    if not isinstance(user, User) or not has_role(user, Role.SRE):
        raise SignOffRefused(
            "approvals in the control plane need the SRE role",
            status=403,
            code="not_sre",
        )
    if len(reason) > REASON_MAX:
        raise SignOffRefused(
            f"at most {REASON_MAX} characters",
            status=400,
            code="invalid",
            field="reason",
        )
    if decision == Decision.REJECTED and not reason:
        raise SignOffRefused(
            "say why you reject the deploy: the reason is shown to the requester",
            status=400,
            code="invalid",
            field="reason",
        )
    name = user.get_username()
    verb = "approve" if decision == Decision.APPROVED else "reject"
    try:
        with transaction.atomic():
            # The deploy's row only, not its environment's.
            locked = (
                DeployRun.objects.select_for_update(of=("self",))
                .select_related("environment")
                .get(pk=run.pk)
            )
            _check_open(locked, user, verb)
            mine = locked.signoffs.filter(approver_name=name).first()
            if mine is not None and decision == Decision.APPROVED:
                _refuse_a_second_approval(verdict(locked, now), locked, name)
            if mine is None:
                SignOff.objects.create(
                    run=locked,
                    approver=user,
                    approver_name=name,
                    decision=decision,
                    reason=reason,
                    decided_at=now,
                )
            else:
                SignOff.objects.filter(pk=mine.pk).update(
                    approver=user, decision=decision, reason=reason, decided_at=now
                )
            audit.record(
                user,
                f"deploy.signoff_{verb}",
                locked,
                environment=locked.environment.name,
                reason=reason,
            )
            if decision == Decision.REJECTED:
                locked.finish(
                    DeployRun.State.FAILED,
                    DeployRun.Reason.REJECTED,
                    f"rejected by {name} in the control plane: {reason}",
                    now,
                    detail={
                        "reason": DeployRun.Reason.REJECTED,
                        "by": name,
                        "why": reason,
                    },
                )
            else:
                after = verdict(locked, now)
                DeployEvent.objects.create(
                    run=locked,
                    kind=DeployEvent.Kind.SIGNOFF_APPROVED,
                    message=f"{name} approved in the control plane "
                    f"({len(after.approvals)} of {after.required})"
                    + (f": {reason}" if reason else ""),
                    detail={"by": name, "reason": reason},
                    created_at=now,
                )
                enqueue.advance_on_commit(locked.pk)
    except IntegrityError:
        # The same person's other click won the insert: it was counted once.
        raise SignOffRefused(
            f"your decision on deploy #{run.pk} was already recorded",
            code="already_decided",
        ) from None
    run.refresh_from_db()
    return verdict(run, now)


def break_glass(
    run: DeployRun,
    user: User | AnonymousUser,
    reason: str,
    *,
    now: datetime | None = None,
) -> Verdict:
    """An admin skips the approvals a deploy still awaits, with a reason: the
    ``break_glass`` event a request breaking glass writes (audited
    ``deploy.break_glass``, flagged the same everywhere); the deploy goes on."""
    now = now or timezone.now()
    try:
        return _break_glass(run, user, reason.strip(), now)
    except SignOffRefused as exc:
        audit.record(
            user,
            "deploy.break_glass",
            run,
            outcome=AuditEvent.Outcome.DENIED,
            code=exc.code,
            reason=exc.message,
        )
        raise


def _break_glass(
    run: DeployRun, user: User | AnonymousUser, reason: str, now: datetime
) -> Verdict:
    if not isinstance(user, User) or not has_role(user, Role.ADMIN):
        raise SignOffRefused(
            "only admins may break glass to skip approvals in the control plane",
            status=403,
            code="not_admin",
        )
    if not reason or len(reason) > REASON_MAX:
        raise SignOffRefused(
            f"say why you break glass, in at most {REASON_MAX} characters: it is "
            "kept in the audit log and shown on the deploy",
            status=400,
            code="invalid",
            field="reason",
        )
    name = user.get_username()
    with transaction.atomic():
        locked = (
            DeployRun.objects.select_for_update(of=("self",))
            .select_related("environment")
            .get(pk=run.pk)
        )
        _check_open(locked, user, "")
        skipped = locked.timeout("signoffs_required")
        DeployEvent.objects.create(
            run=locked,
            kind=DeployEvent.Kind.BREAK_GLASS,
            message=f"approvals in the control plane skipped by {name}: {reason}",
            detail={"signoffs_skipped": skipped, "by": name, "reason": reason},
            created_at=now,
        )
        audit.record(
            user, "deploy.break_glass", locked, reason=reason, signoffs_skipped=skipped
        )
        enqueue.advance_on_commit(locked.pk)
    run.refresh_from_db()
    return verdict(run, now)


def _refuse_a_second_approval(judged: Verdict, run: DeployRun, name: str) -> None:
    """An SRE whose approval still counts may not approve again (one whose
    approval expired renews it)."""
    mine = next((a for a in judged.approvals if a.by == name), None)
    if mine is not None:
        raise SignOffRefused(
            f"you already approved deploy #{run.pk}; your approval counts until "
            f"{mine.expires_at:%Y-%m-%d %H:%M} UTC",
            code="already_approved",
        )


def _check_open(run: DeployRun, user: User, verb: str) -> None:
    """Refuse a decision on a deploy that no longer awaits one, or (to ``verb``
    it) by its requester."""
    if run.is_final:
        raise SignOffRefused(
            f"deploy #{run.pk} already {run.state}"
            + (f" ({run.get_reason_display()})" if run.reason else "")
            + ": nothing to approve or reject",
            code="finished",
        )
    if run.timeout("signoffs_required") <= 0:
        raise SignOffRefused(
            f"{run.environment.name} needs no approval in the control plane",
            code="not_required",
        )
    glass = break_glass_skip(run)
    if glass:
        raise SignOffRefused(
            f"approvals were skipped by break-glass ({glass})", code="break_glass"
        )
    if run.attempts.exists():
        raise SignOffRefused(
            f"deploy #{run.pk} was already dispatched: approvals count only before "
            "the dispatch; cancel it instead",
            code="dispatched",
        )
    # Breaking glass (no verb) on one's own deploy is what a request does too.
    if verb and run.requester_id is not None and run.requester_id == user.pk:
        raise SignOffRefused(
            f"you requested deploy #{run.pk}: another SRE must {verb} it "
            "(two-person rule)",
            status=403,
            code="requester",
        )
