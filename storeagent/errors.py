"""The agent's own errors, under the contract's root (invwire.errors), each with a stable
dotted code. The contract's errors (SKUs, order lines, poison records) live in invwire.

Entrypoints map these exactly once: the CLI to a structured log line and an exit code,
the HTTP API to a status and a JSON error body, the consumer loop to a dead letter.
"""

from __future__ import annotations

from invwire.errors import PoisonRecord, WireError


class AgentError(WireError):
    """The store agent could not complete the operation."""

    code = "agent.error"
    status = 500


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


class ProductNotFound(AgentError):
    """No such product in this store's replica."""

    code = "product.not_found"
    status = 404


class SourceUnavailable(AgentError):
    """Kafka cannot be reached or refused the request."""

    code = "kafka.unavailable"


class KafkaAccessDenied(SourceUnavailable):
    """Kafka answers, but does not let this store in: retrying soon will not help until an
    operator (or central) fixes the store's credential or ACLs."""

    code = "kafka.access_denied"


class KafkaAuthFailed(KafkaAccessDenied):
    """Kafka refused this store's login: its API key is wrong, revoked, or not provisioned."""

    code = "kafka.auth_failed"


class KafkaNotAuthorized(KafkaAccessDenied):
    """Kafka's ACLs do not let this store read its topics or commit in its consumer group."""

    code = "kafka.not_authorized"


class RecordNotApplied(PoisonRecord):
    """The record parsed, but writing it to the replica failed for a reason of its own."""

    code = "record.not_applied"


class TopicsMissing(AgentError):
    """Some Kafka topics do not exist yet."""

    code = "kafka.topics_missing"
