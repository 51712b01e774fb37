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
    """The store terminal API listens on loopback only; --allow-remote lets only the metrics
    listener use another address."""

    code = "config.listen_not_loopback"


class TerminalTokenInsecure(ConfigError):
    """The terminal token file may be read or written by other users, or is not this user's
    own file; run chmod 600 on it."""

    code = "config.terminal_token_insecure"


class TerminalTokenInvalid(ConfigError):
    """The terminal token file cannot be read or created, or holds no usable token."""

    code = "config.terminal_token_invalid"


class InsecureTransport(ConfigError):
    """Central's URL is plain http:// to another machine: the store's API key would cross the
    network in clear. Use https://, or --insecure on a network you trust."""

    code = "config.insecure_transport"


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


class HeaderInvalid(PoisonRecord):
    """A header central sets on its records (invctl-epoch) is not a decimal counter."""

    code = "header.invalid"


class TopicsMissing(AgentError):
    """Some Kafka topics do not exist yet."""

    code = "kafka.topics_missing"


# The store terminal API's refusals at its edge (storeagent.http.guard), before routing.


class HostRefused(AgentError):
    """The agent answers only requests addressed to its loopback address and port (Host)."""

    code = "request.host_refused"
    status = 421


class OriginRefused(AgentError):
    """Requests sent by a web page of another origin are refused."""

    code = "request.origin_refused"
    status = 403


class JsonRequired(AgentError):
    """This request must carry a JSON body: Content-Type: application/json."""

    code = "request.json_required"
    status = 415


class TokenRequired(AgentError):
    """This request needs the agent's terminal token: Authorization: Bearer TOKEN."""

    code = "agent.token_required"
    status = 401


class TokenInvalid(AgentError):
    """The terminal token sent is not the agent's."""

    code = "agent.token_invalid"
    status = 401


# The replica file itself: whose it is, whether it is intact, whether it is still there.


class ReplicaRefused(ConfigError):
    """This replica file cannot be used by this agent as it is; the message says why and
    what to do."""

    code = "replica.refused"


class ReplicaOfAnotherStore(ReplicaRefused):
    """The replica file belongs to another store."""

    code = "replica.other_store"


class ReplicaOfAnotherCluster(ReplicaRefused):
    """The replica file was built from another Kafka cluster or another topic prefix."""

    code = "replica.other_cluster"


class ReplicaDamaged(ReplicaRefused):
    """The replica file is damaged; salvage its sales with `storeagent salvage`."""

    code = "replica.damaged"


class OfflineQueueLost(ReplicaRefused):
    """Central last heard of sales queued offline at this store that this replica does not
    hold."""

    code = "replica.queue_lost"


class ReplicaFileMissing(AgentError):
    """The replica's file was deleted or moved while the agent runs."""

    code = "replica.missing"
    status = 503


class ReplicaFileReplaced(AgentError):
    """The replica's path names another file than the one the agent opened."""

    code = "replica.replaced"
    status = 503


class SaleOfAnotherStore(AgentError):
    """This sale was recorded under another store's id in this replica; this agent never
    sends it."""

    code = "order.other_store"
    status = 409
