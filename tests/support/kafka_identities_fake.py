"""A fake of central's KafkaIdentities port: Kafka's SCRAM users and ACLs, in memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from central.domain.kafka_access import Grant
from invwire.errors.central import KafkaUnavailable


class FakeKafkaIdentities:
    """`down = True` makes every call raise KafkaUnavailable and change nothing;
    `half_made = True` makes `provision` store the credential and then fail (a broker lost
    mid-way); `after_provision(username)` runs after a provision succeeded, e.g. to make the
    database step that follows it fail."""

    def __init__(self, topic_prefix: str = "") -> None:
        self.topic_prefix = topic_prefix
        self.passwords: dict[str, str] = {}
        self.acls: dict[str, set[Grant]] = {}
        self.down = False
        self.half_made = False
        self.after_provision: Callable[[str], None] | None = None
        self.removed: list[str] = []

    def provision(self, username: str, password: str, grants: Sequence[Grant]) -> None:
        self._answer()
        self.passwords[username] = password
        if self.half_made:
            raise KafkaUnavailable(action="provision")
        self.acls.setdefault(username, set()).update(grants)
        if self.after_provision is not None:
            self.after_provision(username)

    def grant(self, username: str, grants: Sequence[Grant]) -> None:
        self._answer()
        self.acls.setdefault(username, set()).update(grants)

    def remove(self, username: str) -> None:
        self._answer()
        self.passwords.pop(username, None)
        self.acls.pop(username, None)
        self.removed.append(username)

    def users(self) -> set[str]:
        return set(self.passwords) | set(self.acls)

    def _answer(self) -> None:
        if self.down:
            raise KafkaUnavailable(action="fake")
