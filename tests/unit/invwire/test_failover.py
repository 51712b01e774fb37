"""invwire.failover: a request that cannot connect to the current URL goes to the next one,
once per URL; the URL that answered is used first afterwards; a request that may have
reached a server is never sent to another."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from invwire.failover import Failover, FailoverTransport
from tests.support.failover_fakes import FakeNetwork, Host

pytestmark = pytest.mark.unit

A, B, C = "https://a.test:8000", "https://b.test:8000", "https://c.test:8000"


class Switches:
    """The switches a Failover reported, as (from, to)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, before: str, now: str) -> None:
        with self._lock:
            self.seen.append((before, now))


def client(
    network: FakeNetwork, *urls: str, switches: Switches | None = None
) -> tuple[httpx.Client, Failover]:
    failover = Failover(urls, on_switch=switches or Switches())
    transport = failover.transport(network)
    return httpx.Client(base_url=failover.primary, transport=transport), failover


@pytest.fixture
def switches() -> Switches:
    return Switches()


@pytest.fixture
def network() -> Iterator[FakeNetwork]:
    yield FakeNetwork()


def test_a_refused_first_url_sends_the_request_to_the_second(network, switches) -> None:
    network.hosts = {A: Host.REFUSES, B: Host.ANSWERS}
    http, failover = client(network, A, B, switches=switches)

    answer = http.post("/api/v1/orders", json={"lines": [1]})

    assert answer.json() == {"host": B, "path": "/api/v1/orders", "body": '{"lines":[1]}'}
    assert answer.headers["X-Host-Header"] == "b.test:8000"
    assert network.tried == [A, B]
    assert failover.current == B
    assert switches.seen == [(A, B)]


def test_a_connect_timeout_moves_on_too(network) -> None:
    network.hosts = {A: Host.CONNECT_TIMEOUT, B: Host.ANSWERS}
    http, _ = client(network, A, B)

    assert http.get("/x").json()["host"] == B


def test_the_url_that_answered_is_tried_first_afterwards_and_the_switch_is_said_once(
    network, switches
) -> None:
    network.hosts = {A: Host.REFUSES, B: Host.ANSWERS}
    http, _ = client(network, A, B, switches=switches)

    for _ in range(3):
        http.get("/x")

    assert network.tried == [A, B, B, B]
    assert switches.seen == [(A, B)]


def test_when_the_current_url_fails_the_next_ones_are_tried_in_turn_wrapping_around(
    network, switches
) -> None:
    network.hosts = {A: Host.REFUSES, B: Host.ANSWERS, C: Host.REFUSES}
    http, failover = client(network, A, B, C, switches=switches)
    http.get("/x")  # now at B
    network.hosts = {A: Host.ANSWERS, B: Host.REFUSES, C: Host.REFUSES}

    assert http.get("/x").json()["host"] == A
    assert network.tried == [A, B, B, C, A]
    assert switches.seen == [(A, B), (B, A)]
    assert failover.current == A


def test_a_read_timeout_after_sending_is_raised_and_not_sent_elsewhere(network, switches) -> None:
    network.hosts = {A: Host.READ_TIMEOUT, B: Host.ANSWERS}
    http, failover = client(network, A, B, switches=switches)

    with pytest.raises(httpx.ReadTimeout):
        http.post("/api/v1/orders", json={})

    assert network.origins() == [A]
    assert network.tried == [A]
    assert (failover.current, switches.seen) == (A, [])


def test_a_read_timeout_on_the_url_moved_to_is_raised_without_trying_more(network) -> None:
    network.hosts = {A: Host.REFUSES, B: Host.READ_TIMEOUT, C: Host.ANSWERS}
    http, _ = client(network, A, B, C)

    with pytest.raises(httpx.ReadTimeout):
        http.get("/x")

    assert network.tried == [A, B]


def test_when_every_url_refuses_the_first_connection_error_is_raised(network, switches) -> None:
    network.hosts = {A: Host.REFUSES, B: Host.CONNECT_TIMEOUT, C: Host.REFUSES}
    http, failover = client(network, A, B, C, switches=switches)

    with pytest.raises(httpx.ConnectError) as caught:
        http.get("/x")

    assert "a.test" in str(caught.value)
    assert network.tried == [A, B, C]  # each once
    assert (failover.current, switches.seen) == (A, [])


def test_a_slow_answer_from_before_a_switch_does_not_switch_back(switches) -> None:
    failover = Failover([A, B], on_switch=switches)
    failover.answered(0, 1)  # a request moved from A to B
    failover.answered(0, 0)  # one sent to A earlier answers late

    assert (failover.current, switches.seen) == (B, [(A, B)])


REWRITES = [
    # (first URL, second URL), the path asked of the client, the path the second one gets
    (("https://a.test/central", "https://b.test:9000"), "/api/v1/o?limit=1", "/api/v1/o?limit=1"),
    (
        ("https://a.test", "https://b.test:9000/edge/central/"),
        "/api/v1/x",
        "/edge/central/api/v1/x",
    ),
    (("https://a.test/one", "https://b.test/two"), "", "/two/"),
    (("http://[::1]:8001/p", "http://[::1]:8002/q"), "/api?x=%2F", "/q/api?x=%2F"),
]


@pytest.mark.parametrize(("urls", "path", "sent_to"), REWRITES)
def test_only_scheme_host_port_and_base_path_are_rewritten(
    network, urls: tuple[str, str], path: str, sent_to: str
) -> None:
    second = httpx.URL(urls[1])
    network.hosts = {_origin(second): Host.ANSWERS}
    http, _ = client(network, *urls)

    answer = http.get(path)

    assert answer.json()["path"] == sent_to
    assert network.sent[0].url.scheme == second.scheme
    assert network.sent[0].headers["Host"] == second.netloc.decode()


def test_headers_and_body_travel_unchanged_to_the_next_url(network) -> None:
    network.hosts = {B: Host.ANSWERS}
    http, _ = client(network, A, B)

    http.post("/api/v1/orders", json={"k": 1}, headers={"X-API-Key": "k3y", "Idempotency-Key": "i"})

    sent = network.sent[0]
    assert (sent.headers["X-API-Key"], sent.headers["Idempotency-Key"]) == ("k3y", "i")
    assert sent.content == b'{"k":1}'


def test_a_request_to_another_url_passes_through_untouched(network) -> None:
    network.hosts = {"https://elsewhere.test": Host.ANSWERS}
    http, _ = client(network, A, B)

    assert http.get("https://elsewhere.test/x").json()["host"] == "https://elsewhere.test"
    assert network.tried == ["https://elsewhere.test"]


def test_one_url_keeps_the_transport_it_was_given() -> None:
    network = FakeNetwork()

    assert Failover([A]).transport(network) is network
    assert Failover([A]).transport(None) is None  # httpx then builds its own, as before
    assert isinstance(Failover([A, B]).transport(network), FailoverTransport)


def test_closing_the_client_closes_the_wrapped_transport(network) -> None:
    http, _ = client(network, A, B)

    http.close()

    assert network.closed


def test_urls_are_shown_without_credentials(switches) -> None:
    failover = Failover(["https://u:secret@a.test", B], on_switch=switches)
    failover.answered(0, 1)

    assert "secret" not in failover.label + repr(failover) + str(switches.seen)


def test_the_switch_is_logged_once_with_the_urls_and_no_header(network, caplog) -> None:
    network.hosts = {B: Host.ANSWERS}
    failover = Failover([A, B])  # the default hook: the log
    http = httpx.Client(base_url=A, transport=failover.transport(network))

    with caplog.at_level("WARNING", logger="invwire.failover"):
        for _ in range(2):
            http.get("/x", headers={"X-API-Key": "sk-never-logged"})

    records = [r for r in caplog.records if r.msg == "failover.switched"]
    assert len(records) == 1
    assert records[0].event_fields == {"service": "central", "from_url": A, "to_url": B}
    assert "sk-never-logged" not in caplog.text


def test_concurrent_requests_all_reach_the_live_url_each_trying_each_url_once(
    network, switches
) -> None:
    network.hosts = {A: Host.REFUSES, B: Host.REFUSES, C: Host.ANSWERS}
    http, failover = client(network, A, B, C, switches=switches)
    answers: list[str] = []
    start = threading.Barrier(16)

    def buy() -> None:
        start.wait()
        for _ in range(10):
            answers.append(http.get("/x").json()["host"])

    threads = [threading.Thread(target=buy) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert answers == [C] * 160
    assert network.origins() == [C] * 160
    assert len(network.tried) <= 160 * 3  # at most once per URL per request
    assert failover.current == C
    assert switches.seen == [(A, C)]  # however many requests moved, the switch is said once


def _origin(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}"
