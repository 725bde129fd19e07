"""The agents app's models, one module per family; imported here so Django
finds them and callers name them as `agents.models.X`."""

from agents.models.budgets import Budget
from agents.models.changesets import ChangeSet, ChangeSetMember, JournalStep
from agents.models.recovery import RevertRequest, WorkerBeat
from agents.models.salvages import Salvage
from agents.models.sessions import (
    SESSION_TOKEN_PREFIX,
    TOKEN_PREFIX,
    Agent,
    LogChunk,
    Session,
    StateError,
    hash_token,
)
from agents.models.submissions import (
    AlreadyApproved,
    Approval,
    GateResult,
    ReviewComment,
    Risk,
    Submission,
    review_pack_text,
)
from agents.models.usage import Price, TokenUsage, UsageDay
from agents.models.webhooks import Delivery, Webhook

__all__ = [
    "SESSION_TOKEN_PREFIX",
    "TOKEN_PREFIX",
    "Agent",
    "AlreadyApproved",
    "Approval",
    "Budget",
    "ChangeSet",
    "ChangeSetMember",
    "Delivery",
    "GateResult",
    "JournalStep",
    "LogChunk",
    "Price",
    "RevertRequest",
    "ReviewComment",
    "Risk",
    "Salvage",
    "Session",
    "StateError",
    "Submission",
    "TokenUsage",
    "UsageDay",
    "Webhook",
    "WorkerBeat",
    "review_pack_text",
    "hash_token",
]
