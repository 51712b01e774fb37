"""The agent's error hierarchy: every error carries a stable dotted code.

Entrypoints map these exactly once: the CLI to a structured log line and an exit code,
the HTTP API to a status and a JSON error body, the consumer loop to a dead letter.
"""

from __future__ import annotations

from typing import Any


class AgentError(Exception):
    """The store agent could not complete the operation."""

    code = "agent.error"
    status = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        self.details = details

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(AgentError):
    """The agent's configuration is invalid."""

    code = "config.invalid"


class ConfigMissing(ConfigError):
    """A required setting is missing."""

    code = "config.missing"


class ConfigFileError(ConfigError):
    """The configuration file cannot be read or is not valid TOML."""

    code = "config.file_invalid"


class KeyFileInsecure(ConfigError):
    """The API key file is readable by other users; run chmod 600 on it."""

    code = "config.key_file_insecure"


class ListenRefused(ConfigError):
    """The agent listens on loopback only unless --allow-remote is given."""

    code = "config.listen_not_loopback"


class ListenUnavailable(AgentError):
    """The listen address cannot be bound."""

    code = "listen.unavailable"


class ReplicaUnavailable(AgentError):
    """The replica database cannot be opened."""

    code = "replica.unavailable"


class ReplicaSchemaTooNew(AgentError):
    """The replica was written by a newer storeagent; upgrade the agent."""

    code = "replica.schema_too_new"


class ReplicaNotReady(AgentError):
    """The replica has not finished its first sync from Kafka yet."""

    code = "replica.not_ready"
    status = 503


class InvalidSku(AgentError):
    """A SKU is 1-64 characters of A-Z, 0-9, '.', '_' or '-', starting with a letter or digit."""

    code = "sku.invalid"
    status = 422


class ProductNotFound(AgentError):
    """No such product in this store's replica."""

    code = "product.not_found"
    status = 404


class SourceUnavailable(AgentError):
    """Kafka cannot be reached or refused the request."""

    code = "kafka.unavailable"


class TopicsMissing(AgentError):
    """Some Kafka topics do not exist yet."""

    code = "kafka.topics_missing"


class PoisonRecord(AgentError):
    """A Kafka record cannot be applied; it goes to dead_letters."""

    code = "record.invalid"


class RecordTooLarge(PoisonRecord):
    """The record value is larger than 1 MiB."""

    code = "record.too_large"


class InvalidJson(PoisonRecord):
    """The record value is not UTF-8 JSON."""

    code = "json.invalid"


class InvalidEnvelope(PoisonRecord):
    """The record value is not an event envelope."""

    code = "envelope.invalid"


class UnknownType(PoisonRecord):
    """The event type is not known on this topic."""

    code = "type.unknown"


class UnsupportedSchema(PoisonRecord):
    """The event schema is newer than this agent understands."""

    code = "schema.unsupported"


class MissingField(PoisonRecord):
    """A required event field is missing."""

    code = "field.missing"


class InvalidField(PoisonRecord):
    """An event field has the wrong type or value."""

    code = "field.invalid"
