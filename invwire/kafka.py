"""Kafka client settings central and the agent share: how a client logs in (PLAINTEXT, or
SASL_SSL with SCRAM), how soon it reconnects and how a consumer reads."""

from __future__ import annotations

from typing import Any

PLAINTEXT = "PLAINTEXT"
SASL_SSL = "SASL_SSL"

# kafka-python doubles the wait between reconnects up to 30 s by default: after a broker
# outage or a leader's move a client waited seconds on a dead address after the cluster was
# back (the agent's replica caught up 8-25 s late). Java clients cap it at 1 s.
RECONNECT_BACKOFF_MAX_MS = 1_000


def reader_config() -> dict[str, Any]:
    """kafka-python settings every consumer of ours shares: offsets are committed by the code
    that applied the records (or never), reading a topic never creates it, and reconnects
    are quick."""
    return {
        "enable_auto_commit": False,
        "allow_auto_create_topics": False,
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }


def login_config(
    protocol: str,
    *,
    mechanism: str,
    username: str | None,
    password: str | None,
    ca_file: str | None,
) -> dict[str, Any]:
    """kafka-python's connection settings: PLAINTEXT (anything but SASL_SSL), or SASL_SSL:
    TLS verified against `ca_file` (the system's CAs when None) with the broker's host name
    checked, and SCRAM as `username`. The result holds the password: never log it."""
    if protocol != SASL_SSL:
        return {"security_protocol": PLAINTEXT}
    return {
        "security_protocol": SASL_SSL,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
        "ssl_cafile": ca_file,
        "ssl_check_hostname": True,
    }
