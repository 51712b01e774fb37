"""The agent's background threads: each runs one body until the stop event is set.

A body that raises is a failed task: the error is logged with its traceback under the task's
`crashed` event, the task is marked failed and `on_failure` is called (the agent then stops
its HTTP server and exits 1, and systemd restarts it). Bodies retry what is transient
themselves; what reaches the supervisor is a bug or a broken dependency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from invwire.logs import EventLog


class SupervisedTask:
    def __init__(
        self,
        name: str,
        body: Callable[[], None],
        *,
        crashed: str,
        stop: threading.Event,
        on_failure: Callable[[], None],
        log: EventLog,
        errors_once_stopping_fail: bool = True,
    ) -> None:
        """`crashed` is the log event of a failure. With `errors_once_stopping_fail` False, an
        error raised after `stop` was set ends the task quietly (e.g. the agent closed the
        replica under the body's last step)."""
        self.name = name
        self._body, self._crashed, self._stop = body, crashed, stop
        self._on_failure, self._log = on_failure, log
        self._errors_once_stopping_fail = errors_once_stopping_fail
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.failed = False

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._body()
        except Exception:
            if self._stop.is_set() and not self._errors_once_stopping_fail:
                return
            self.failed = True
            self._log.error(self._crashed, exc=True)
            self._on_failure()
