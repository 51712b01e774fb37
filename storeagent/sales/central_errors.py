"""Central's refusals as the till gets them: central's own error, or its refusal of this
store's API key (502: the agent, not the till, holds the key)."""

from __future__ import annotations

from invwire.errors.agent import AgentError
from storeagent.upstream.client import Refused


class CentralRefused(AgentError):
    """Central refused the order; nothing was sold."""

    def __init__(self, refusal: Refused) -> None:
        super().__init__(refusal.message)
        self.code, self.status, self.details = refusal.code, refusal.status, dict(refusal.details)


class CentralAuthFailed(AgentError):
    """Central refused this store's API key; check STOREAGENT_API_KEY or --api-key-file."""

    code = "central.auth_failed"
    status = 502
