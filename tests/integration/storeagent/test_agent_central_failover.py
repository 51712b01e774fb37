"""Several central URLs with real processes: an agent and invctl given a dead central first
(a port nobody listens on) and a real one second reach the real one, sell online, and say
which URL they use."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from harness.waiting import eventually
from tests.support.processes import ADMIN, ADMIN_PASSWORD, BIN, Stack, stack


@contextmanager
def dead_port() -> Iterator[int]:
    """A loopback port bound and never listened on: every connection to it is refused (and,
    held for the test, no other process can take it meanwhile)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def stock_at(s: Stack, agent_url: str, sku: str) -> int:
    shown = s.invctl("--agent", agent_url, "--json", "stock", "show", sku, check=False)
    assert shown.returncode == 0, shown.stderr
    return int(json.loads(shown.stdout)["quantity"])


def test_an_agent_and_invctl_with_a_dead_central_first_sell_through_the_second(
    tmp_path, kafka_cluster, topic_prefix
):
    with dead_port() as port, stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        dead = f"http://127.0.0.1:{port}"
        both = {"INVCTL_CENTRAL": f"{dead},{s.central_url}"}
        login = s.invctl(
            "login", "--username", ADMIN, "--password-stdin", input=ADMIN_PASSWORD, env=both
        )
        store = json.loads(
            s.invctl("--json", "store", "add", "store-1", "--name", "One", env=both).stdout
        )
        category = json.loads(s.invctl("--json", "category", "add", "Dairy", env=both).stdout)
        s.invctl(
            "product", "add", "MILK-1L", "--name", "Milk", "--price", "1.25",
            "--category", str(category["id"]), env=both,
        )  # fmt: skip
        s.invctl("stock", "set", "MILK-1L", "40", env=both)
        agent = s.start_agent("store-1", store["api_key"], central=both["INVCTL_CENTRAL"])
        eventually(lambda: stock_at(s, agent.url, "MILK-1L") == 40, what="MILK-1L replicated")

        bought = s.invctl("--agent", agent.url, "--json", "buy", "MILK-1L:2")
        status = httpx.get(f"{agent.url}/sync/status", timeout=5).json()
        shown = s.invctl("--agent", agent.url, "sync", "status")
        at_central = json.loads(s.invctl("--json", "stock", "show", "MILK-1L", env=both).stdout)
        agent.stop()

    assert f"{dead} could not be reached; using {s.central_url}" in login.stderr
    assert json.loads(bought.stdout)["status"] == "confirmed"  # online: offline selling is off
    assert at_central["quantity"] == 38
    assert (status["central_url"], status["central_urls"]) == (s.central_url, [dead, s.central_url])
    assert f"{s.central_url} (of {dead}, {s.central_url})" in shown.stdout
    events = [json.loads(line) for line in agent.log_lines() if line.startswith("{")]
    switched = [e for e in events if e["event"] == "failover.switched"]
    assert [(e["from_url"], e["to_url"]) for e in switched] == [(dead, s.central_url)]
    assert store["api_key"] not in "\n".join(agent.log_lines())


@pytest.mark.parametrize(
    ("central", "code", "says"),
    [
        ("https://a.test,,https://b.test", "config.invalid", "empty element"),
        ("https://a.test,https://ops:hunter2@b.test", "config.invalid", "no user name or password"),
        ("https://a.test,http://b.test:8000", "config.insecure_transport", "at http://b.test:8000"),
    ],
)
def test_the_agent_exits_2_on_a_bad_element_naming_it(
    tmp_path, central: str, code: str, says: str
) -> None:
    result = subprocess.run(
        [str(BIN / "storeagent"), "run", "--store-id", "s1", "--central", central],
        env={**os.environ, "STOREAGENT_API_KEY": "ik_test", "STOREAGENT_DB": ""},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    error = json.loads(line)
    assert (error["event"], error["code"]) == ("agent.config_invalid", code)
    assert says in error["message"]
    assert "hunter2" not in result.stderr
