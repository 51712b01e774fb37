"""Which HTTP URLs may carry a credential: https anywhere, plain http to this machine only.

A password, a JWT or a store's API key sent over plain HTTP can be read by anyone on the
path; on loopback there is no path. Central, the agent and invctl apply this one rule.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 and `localhost` (a name that resolves to loopback by convention)."""
    if not host:
        return False
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_plain_http_to_remote(url: str) -> bool:
    """Whether `url` is http:// to a host other than this machine."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "http" and not is_loopback_host(parts.hostname)


def split_url_list(raw: str) -> list[str]:
    """The elements of a comma-separated list of URLs (a central's, tried in turn:
    invwire.failover), stripped; an empty element stays "" for the caller to refuse."""
    return [part.strip() for part in raw.split(",")]


def without_credentials(url: str) -> str:
    """`url` with any user name and password replaced by `***`: fit for a message or a log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()
