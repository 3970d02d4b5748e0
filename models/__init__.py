"""The data and the counting rules. Nothing here imports `twilio` or `flask.request`."""

from .audit import AuditEntry, audit
from .base import Base, db, insert_for, utcnow
from .calls import Call, CallTopic, Choice
from .comments import CommentState
from .jobs import Job
from .line import LineSettings, Topic
from .prompts import Prompt, PromptAudio, PromptCode, PromptCodeFailure, PromptTake
from .recordings import Recording, Transcription
from .setup import init_app
from .summary import CallerDay, CallerHour, HourlyCount, TopicCaller
from .tokens import ApiToken
from .users import User

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "Call",
    "CallerDay",
    "CallerHour",
    "CallTopic",
    "Choice",
    "HourlyCount",
    "Job",
    "LineSettings",
    "Prompt",
    "PromptAudio",
    "PromptCode",
    "PromptCodeFailure",
    "PromptTake",
    "Recording",
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
