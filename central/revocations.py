"""The revocation retrier: deletes the Kafka users of revoked keys that Kafka could not
delete at the time, until the `kafka_revocations` table is empty.

Every central that provisions identities runs one; two draining the same row both delete
the same user, which is harmless.
"""

from __future__ import annotations

from collections.abc import Callable

from central.services.identities import KafkaIdentities, drain_revocations
from central.uow import UnitOfWork
from central.worker import BackgroundLoop
from invwire.logs import EventLog

log = EventLog("central.revocations")


class RevocationRetrier(BackgroundLoop):
    name = "revocations"

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        identities: KafkaIdentities,
        *,
        poll_seconds: float = 5.0,
        max_backoff_seconds: float = 60.0,
    ) -> None:
        super().__init__(
            poll_seconds=poll_seconds,
            max_backoff_seconds=max_backoff_seconds,
            min_backoff_seconds=1.0,
        )
        self._uow = uow
        self.identities = identities
        self.last_error = ""

    def step(self) -> bool:
        self.run_once()
        return False

    def on_failure(self, exc: Exception, retry_in: float) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("revocations.failed", error=self.last_error, retry_in=retry_in)

    def run_once(self) -> int:
        removed = drain_revocations(self._uow(), self.identities)
        self.last_error = ""
        return removed
