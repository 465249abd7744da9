"""Storage in SQLite or PostgreSQL: registry, states, audit log, rule timers, traces, history."""

from hub.storage.rules import HistoryRecord, RuleStore, TimerRecord, TraceRecord
from hub.storage.store import AuditEntry, Storage, StorageError, redact_url

__all__ = [
    "AuditEntry",
    "HistoryRecord",
    "RuleStore",
    "Storage",
    "StorageError",
    "TimerRecord",
    "TraceRecord",
    "redact_url",
]
