"""A background loop for central's workers (the outbox relay, the revocation retrier):
`step()` until stopped; a failure backs off (doubling, capped) and is tried again, never
dropped; `wake()` cuts a wait short."""

from __future__ import annotations

import threading


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
            self._wake.wait(backoff or self.poll_seconds)
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
