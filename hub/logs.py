"""Structured (JSON lines) logging for `logging.format: json`."""

from __future__ import annotations

import logging

import orjson


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any exception text."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line."""
        body = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(body).decode()
