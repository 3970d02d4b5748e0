"""The data and the counting rules. Nothing here imports `twilio` or `flask.request`."""

from .audit import AuditEntry
from .base import Base, db, insert_for, utcnow
from .calls import Call, CallTopic, Choice
from .jobs import Job
from .line import LineSettings, Topic
from .recordings import Recording, Transcription
from .setup import init_app
from .tokens import ApiToken

__all__ = [
    "ApiToken", "AuditEntry", "Base", "Call", "CallTopic", "Choice", "Job", "LineSettings", "Recording", "Topic",
    "Transcription", "db", "init_app", "insert_for", "utcnow",
]
