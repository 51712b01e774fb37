"""Central with no single point of failure, for chaos tests: two central "hosts" (each
`central serve --workers 2`, each on its own node of a Galera cluster) behind HAProxy
configured from deploy/haproxy/haproxy.cfg, with store agents pointed at HAProxy."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.haproxy import haproxy_config
from tests.support.galera import connect, mariadb_script, start_cluster
from tests.support.processes import (
    ADMIN,
    ADMIN_PASSWORD,
    BIN,
    Service,
    Stack,
    free_port,
    wait_http,
)


@dataclass
class GaleraCluster:
    directory: Path
    port: int
    urls: list[str] = field(default_factory=list)  # the nodes', node 1 first

    def start(self) -> None:
        self.urls = start_cluster(self.directory, self.port)

    def kill_node(self, node: int) -> None:
        """SIGKILL the node's mariadbd: `start` brings it back (it recovers its position
        with --wsrep-recover and rejoins by a state transfer)."""
        pid = int((self.directory / f"node-{node}" / "mysqld.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        mariadb_script("stop", "--dir", str(self.directory))


@contextmanager
def own_galera(directory: Path, port: int) -> Iterator[GaleraCluster]:
    cluster = GaleraCluster(directory, port)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def create_database(node_url: str, name: str) -> None:
    with closing(connect(node_url)) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")


def start_central_host(s: Stack, name: str, database_url: str, workers: int = 2) -> Service:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**s.central_env(), "INVCTL_DATABASE_URL": database_url}
    host = s.spawn(
        name,
        [str(BIN / "central"), "serve", "--port", str(port), "--workers", str(workers)],
        url,
        env,
    )
    wait_http(f"{url}/readyz", process=host.process)
    return host


def start_proxy(s: Stack, hosts: dict[str, Service]) -> Service:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.fail("haproxy is not installed: `scripts/dev setup` (apt-get install haproxy)")
    port = free_port()
    servers = {name: host.url.removeprefix("http://") for name, host in hosts.items()}
    config = s.workdir / "haproxy.cfg"
    config.write_text(haproxy_config(port, servers))
    proxy = s.spawn("haproxy", [haproxy, "-db", "-f", str(config)], f"http://127.0.0.1:{port}", {})
    wait_http(f"{proxy.url}/readyz", process=proxy.process)
    return proxy


def create_admin(s: Stack, database_url: str) -> None:
    subprocess.run(
        [str(BIN / "central"), "create-admin", ADMIN, "--password-stdin"],
        input=ADMIN_PASSWORD.encode(),
        env={**s.env, **s.central_env(), "INVCTL_DATABASE_URL": database_url},
        check=True,
        capture_output=True,
    )
