"""Storage of the registry, last states and the audit log (SQLite or PostgreSQL)."""

from hub.storage.store import AuditEntry, Storage, StorageError, redact_url

__all__ = ["AuditEntry", "Storage", "StorageError", "redact_url"]
