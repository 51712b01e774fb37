"""A background loop for central's workers (the outbox relay, the revocation retrier, the
allowance sweep): `step()` until stopped; a failure backs off (doubling, capped) and is
tried again, never dropped; `wake()` cuts a wait short. `PeriodicTask`: one round every
`poll_seconds`, a failure logged and kept until a round succeeds."""

from __future__ import annotations

import threading

from invwire.logs import EventLog


class BackgroundLoop:
    name = "worker"

    def __init__(
        self, *, poll_seconds: float, max_backoff_seconds: float, min_backoff_seconds: float
    ) -> None:
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff_seconds
        self.min_backoff = min_backoff_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> bool:
        """One round; True when there is more to do at once."""
        raise NotImplementedError

    def on_failure(self, exc: Exception, retry_in: float) -> None:
        raise NotImplementedError

    def on_stop(self) -> None:
        """Runs on the loop's thread after the last round."""

    def idle_seconds(self) -> float:
        """How long to wait after a round that left nothing to do, unless woken."""
        return self.poll_seconds

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                busy = self.step()
                backoff = 0.0
            except Exception as exc:  # a worker must outlive broker and database outages
                backoff = min(self.max_backoff, max(self.min_backoff, backoff * 2))
                self.on_failure(exc, backoff)
                busy = False
            if busy:
                continue
            self._wake.wait(backoff or self.idle_seconds())
            self._wake.clear()
        self.on_stop()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
            self._thread.start()

    def join(self, timeout: float) -> None:
        """Stop and wait for the thread to finish its round."""
        if self._thread is not None:
            self.stop()
            self._thread.join(timeout)
            self._thread = None


class PeriodicTask(BackgroundLoop):
    """`run_once()` every `poll_seconds`; a failed round is logged as `failed_event` on
    `log`, kept in `last_error` until a round succeeds, and tried again after a back-off."""

    failed_event = "worker.failed"
    log = EventLog("central.worker")

    def __init__(self, *, poll_seconds: float, max_backoff_seconds: float = 60.0) -> None:
        super().__init__(
            poll_seconds=poll_seconds,
            max_backoff_seconds=max_backoff_seconds,
            min_backoff_seconds=1.0,
        )
        self.last_error = ""

    def run_once(self) -> int:
        """One round; how many things it did."""
        raise NotImplementedError

    def step(self) -> bool:
        self.run_once()
        self.last_error = ""
        return False

    def on_failure(self, exc: Exception, retry_in: float) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self.log.warning(self.failed_event, error=self.last_error, retry_in=retry_in)
