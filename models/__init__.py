"""The data and the counting rules. Nothing here imports `twilio` or `flask.request`."""

from .audit import AuditEntry, audit
from .base import Base, db, insert_for, utcnow
from .blocklist import BlockedNumber
from .callbacks import CallbackRequest
from .calls import Call, CallTopic, Choice
from .comments import CommentState
from .drafts import ScriptVersion
from .holds import HeldTranscript, LegalHold
from .jobs import Job
from .kept_counts import HourChanges, KeptCount
from .line import LineSettings, Topic
from .prompts import Prompt, PromptAudio, PromptCode, PromptCodeFailure, PromptTake
from .receipts import TallyReceipt
from .recordings import Recording, Transcription
from .setup import init_app
from .summary import CallerDay, CallerHour, HourlyCount, TopicCaller
from .tokens import ApiToken
from .users import User

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "BlockedNumber",
    "CallbackRequest",
    "Call",
    "CallerDay",
    "CallerHour",
    "CallTopic",
    "Choice",
    "HeldTranscript",
    "HourlyCount",
    "Job",
    "HourChanges",
    "KeptCount",
    "LegalHold",
    "LineSettings",
    "Prompt",
    "PromptAudio",
    "PromptCode",
    "PromptCodeFailure",
    "PromptTake",
    "Recording",
    "TallyReceipt",
    "ScriptVersion",
    "Topic",
    "TopicCaller",
    "Transcription",
    "db",
    "init_app",
    "insert_for",
    "utcnow",
    "CommentState",
    "User",
    "audit",
]
