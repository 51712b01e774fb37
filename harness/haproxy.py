"""HAProxy in front of central hosts, from the deployment's own configuration."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_TEMPLATE = ROOT / "deploy" / "haproxy" / "haproxy.cfg"


def haproxy_config(port: int, servers: dict[str, str]) -> str:
    """deploy/haproxy/haproxy.cfg listening on 127.0.0.1:`port`, with `servers` (name ->
    host:port) in place of the template's (as scripts/cluster writes it)."""
    kept = []
    for line in HAPROXY_TEMPLATE.read_text().splitlines():
        if line.strip().startswith("server central-"):
            continue
        bind = line.strip().startswith("bind ")
        kept.append(f"    bind 127.0.0.1:{port}" if bind else line)
    kept += [f"    server {name} {address} check" for name, address in servers.items()]
    return "\n".join(kept) + "\n"
