"""Deploys app: GitHub webhook deliveries and the workflow jobs they report;
environments, their runner pools and the deploy runs sent to them."""

from __future__ import annotations

from deploys.models.change_tickets import TicketUpdate, TicketUpdateQuerySet
from deploys.models.dispatch_inputs import UndeclaredInput
from deploys.models.dora import CommitDate, Rollback
from deploys.models.environments import (
    FREEZE_HORIZON,
    MAX_FREEZE_MINUTES,
    Environment,
    EnvironmentRunner,
    FreezeWindow,
    PoolChoice,
    SignalPolicy,
    validate_pattern,
)
from deploys.models.idempotency import IdempotencyRecord
from deploys.models.protection import GateReview
from deploys.models.runs import (
    CORRELATION_TOKEN,
    DEPLOY_RUNBOOKS,
    DeployAttempt,
    DeployEvent,
    DeployRun,
    DeployRunQuerySet,
    new_correlation_token,
)
from deploys.models.signoffs import SignOff
from deploys.models.webhooks import (
    WebhookDelivery,
    WebhookDeliveryQuerySet,
    WebhookHook,
    WebhookRedelivery,
    WorkflowJob,
    WorkflowJobQuerySet,
)

__all__ = [
    "CORRELATION_TOKEN",
    "DEPLOY_RUNBOOKS",
    "FREEZE_HORIZON",
    "MAX_FREEZE_MINUTES",
    "CommitDate",
    "DeployAttempt",
    "GateReview",
    "DeployEvent",
    "DeployRun",
    "DeployRunQuerySet",
    "Environment",
    "EnvironmentRunner",
    "FreezeWindow",
    "IdempotencyRecord",
    "Rollback",
    "PoolChoice",
    "SignOff",
    "SignalPolicy",
    "TicketUpdate",
    "TicketUpdateQuerySet",
    "UndeclaredInput",
    "WebhookDelivery",
    "WebhookDeliveryQuerySet",
    "WebhookHook",
    "WebhookRedelivery",
    "WorkflowJob",
    "WorkflowJobQuerySet",
    "new_correlation_token",
    "validate_pattern",
]
