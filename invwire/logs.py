"""One logging style for every process: JSON lines on stderr, one object per line with
`ts`, `level`, a stable `event` key and the event's fields. A line logged while serving
a request carries its `request_id`; with tracing on (invwire.tracing), a line logged inside a
span carries its `trace_id` too.

Log through `EventLog("central.relay").info("relay.lease", leader=True)`; lines from
libraries keep their text under `message` with the event `library.log`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from invwire import tracing

_FIELDS = "event_fields"
QUIET_LIBRARIES = ("kafka", "peewee", "httpx", "httpcore", "uvicorn.access")

# The X-Request-ID of the HTTP request being served (set by invwire.http.RequestContext), so
# every line logged while serving it carries it, and clients can forward it.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


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
        trace_id = tracing.trace_id()  # None at once when tracing is off
        if trace_id is not None:
            payload.setdefault("trace_id", trace_id)
        payload |= {k: v for k, v in self._fields.items() if k not in payload}
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class EventLog:
    """A logger whose message is a stable event key and whose arguments are fields."""

    def __init__(self, name: str) -> None:
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


class StderrHandler(logging.StreamHandler):
    """Writes each line to `sys.stderr` as it is then, not as it was when logging was set up:
    a command run inside another program (a test runner's CLI invocation, which closes the
    stderr it lent) leaves no handler behind that writes to a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass  # always the current sys.stderr


def configure_logging(
    level: int | str = logging.INFO,
    stream: IO[str] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> None:
    """JSON lines on `stream` (stderr); `fields` are added to every line."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    handler.setFormatter(JsonFormatter(fields))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for noisy in QUIET_LIBRARIES:
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
