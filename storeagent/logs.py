"""JSON lines on stderr: one object per line with `ts`, `level`, `event` and the event's fields."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

_FIELDS = "event_fields"

# The X-Request-ID of the HTTP request being served (set by storeagent.middleware), so every
# line logged while serving it, order lines included, carries it.
request_id_var: ContextVar[str | None] = ContextVar("storeagent_request_id", default=None)


class JsonFormatter(logging.Formatter):
    """`fields` (e.g. the store id) go on every line, after the event's own fields."""

    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
        }
        fields = getattr(record, _FIELDS, None)
        if fields is None:
            payload |= {
                "event": "library.log",
                "logger": record.name,
                "message": record.getMessage(),
            }
        else:
            payload["event"] = record.msg
            payload |= {k: v for k, v in fields.items() if k not in payload}
        request_id = request_id_var.get()
        if request_id is not None:
            payload.setdefault("request_id", request_id)
        payload |= {k: v for k, v in self._fields.items() if k not in payload}
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class EventLog:
    """A logger whose message is a stable event key and whose arguments are fields."""

    def __init__(self, name: str = "storeagent") -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc: bool = False) -> None:
        self._logger.log(level, event, exc_info=exc, extra={_FIELDS: fields})

    def debug(self, event: str, /, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, /, *, exc: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc)


def configure_logging(
    level: int = logging.INFO,
    stream: IO[str] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> None:
    """JSON lines on `stream`; `fields` are added to every line (the CLI adds the store id)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(fields))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kafka", "peewee", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
