"""The revocation retrier: deletes the Kafka users of revoked keys that Kafka could not
delete at the time, until the `kafka_revocations` table is empty.

Every central that provisions identities runs one; two draining the same row both delete
the same user, which is harmless.
"""

from __future__ import annotations

from collections.abc import Callable

from central.services.identities import KafkaIdentities, drain_revocations
from central.uow import UnitOfWork
from central.worker import PeriodicTask
from invwire.logs import EventLog


class RevocationRetrier(PeriodicTask):
    name = "revocations"
    failed_event = "revocations.failed"
    log = EventLog("central.revocations")

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        identities: KafkaIdentities,
        *,
        poll_seconds: float = 5.0,
        max_backoff_seconds: float = 60.0,
    ) -> None:
        super().__init__(poll_seconds=poll_seconds, max_backoff_seconds=max_backoff_seconds)
        self._uow = uow
        self.identities = identities

    def run_once(self) -> int:
        removed = drain_revocations(self._uow(), self.identities)
        self.last_error = ""
        return removed
