"""Several central URLs for the agent: the setting takes a comma-separated list (each URL
checked as one is), every client to central tries them in turn and shares which one is
current, and /sync/status names it."""

from __future__ import annotations

import httpx
import pytest

from invwire.errors.agent import ConfigError, InsecureTransport
from invwire.failover import Failover
from invwire.logs import EventLog
from invwire.orders import Line
from storeagent.cli import _warn_if_plain_http
from storeagent.http.app import create_app
from storeagent.settings import AgentSettings, load_settings
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.upstream.client import CentralUnavailable, HttpCentralClient, shared_failover
from storeagent.upstream.heartbeat import HttpHeartbeat
from tests.support.failover_fakes import FakeNetwork, Host
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

pytestmark = pytest.mark.unit

A, B = "https://central-a.test", "https://central-b.test:8443"
KEY = "sk-failover-never-logged"


def load(central: str, **flags: object) -> AgentSettings:
    return load_settings(
        {"store_id": "s1", "central": central, **flags}, {"STOREAGENT_API_KEY": "k"}, None
    )


@pytest.mark.parametrize(
    ("raw", "urls"),
    [
        ("https://a.test", ("https://a.test",)),
        ("https://a.test/, https://b.test:8443", ("https://a.test", "https://b.test:8443")),
        (
            "http://127.0.0.1:8000,https://b.test/central/,http://[::1]:8001",
            ("http://127.0.0.1:8000", "https://b.test/central", "http://[::1]:8001"),
        ),
    ],
)
def test_a_list_of_urls_is_kept_normalized_in_the_order_given(
    raw: str, urls: tuple[str, ...]
) -> None:
    settings = load(raw)

    assert settings.central_urls == urls
    assert settings.central_url == ",".join(urls)
    assert settings.summary()["central"] == ",".join(urls)


def test_the_environment_takes_a_list_too() -> None:
    env = {"STOREAGENT_API_KEY": "k", "STOREAGENT_CENTRAL": f"{A},{B}"}

    assert load_settings({"store_id": "s1"}, env, None).central_urls == (A, B)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (f"{A},,{B}", "empty element"),
        (f"{A},", "empty element"),
        (f",{A}", "empty element"),
        (f"{A},ftp://b.test", "'ftp://b.test' must be http(s)://HOST[:PORT]"),
        (f"{A},https://b.test:99999", "must be http(s)://HOST[:PORT]"),
        (f"{A},https://", "must be http(s)://HOST[:PORT]"),
        (f"{A},https://b.test/?x=1", "no query or fragment"),
        (f"{A},https://b.test/#top", "no query or fragment"),
        (f"{A},https://b.test?", "no query or fragment"),
        (f"{A},{A}/", "names a URL twice"),
    ],
)
def test_a_bad_element_is_a_config_error_naming_it(raw: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(raw)

    assert caught.value.code == "config.invalid"
    assert caught.value.details == {"field": "central"}
    assert says in caught.value.message


def test_a_url_with_credentials_is_refused_without_echoing_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load(f"{A},https://store:hunter2@b.test")

    assert caught.value.code == "config.invalid"
    assert "user name or password" in caught.value.message
    assert "hunter2" not in caught.value.message


def test_plain_http_to_another_machine_is_refused_per_url() -> None:
    with pytest.raises(InsecureTransport) as caught:
        load("http://127.0.0.1:8000,http://central-b:8000")

    assert caught.value.code == "config.insecure_transport"
    assert "http://central-b:8000" in caught.value.message


def test_insecure_allows_plain_http_in_the_list() -> None:
    settings = load("http://central-a:8000,http://central-b:8000", insecure=True)

    assert settings.central_urls == ("http://central-a:8000", "http://central-b:8000")


def test_each_plain_url_to_another_machine_gets_its_own_warning(caplog) -> None:
    settings = load("http://central-a:8000,https://b.test,http://central-c:8000", insecure=True)

    with caplog.at_level("WARNING", logger="storeagent"):
        _warn_if_plain_http(settings, EventLog("storeagent"))

    warned = [r.event_fields["central"] for r in caplog.records if r.msg == "central.plain_http"]
    assert warned == ["http://central-a:8000", "http://central-c:8000"]


def test_orders_go_to_the_second_url_when_the_first_refuses() -> None:
    network = FakeNetwork(hosts={B: Host.ANSWERS}, body={"items": []})
    client = HttpCentralClient(f"{A},{B}", KEY, transport=network)

    assert client.find_order("sale-1") is None

    assert network.origins() == [B]
    assert network.sent[0].url.path == "/api/v1/orders"
    assert network.sent[0].headers["X-API-Key"] == KEY


def test_every_url_refusing_is_unavailable_and_known_never_sent() -> None:
    client = HttpCentralClient(f"{A},{B}", KEY, transport=FakeNetwork())

    with pytest.raises(CentralUnavailable) as caught:
        client.place_order("sale-1", [Line("MILK-1L", 1)])

    assert caught.value.details["reason"] == "connect"
    assert caught.value.maybe_sent is False
    assert A in caught.value.message and B in caught.value.message


def test_a_read_timeout_is_unavailable_maybe_sent_and_not_sent_to_the_next_url() -> None:
    network = FakeNetwork(hosts={A: Host.READ_TIMEOUT, B: Host.ANSWERS})
    client = HttpCentralClient(f"{A},{B}", KEY, transport=network)

    with pytest.raises(CentralUnavailable) as caught:
        client.place_order("sale-1", [Line("MILK-1L", 1)])

    assert caught.value.maybe_sent is True
    assert network.origins() == [A]


def test_the_clients_share_one_current_url() -> None:
    network = FakeNetwork(hosts={B: Host.ANSWERS}, body={"items": []})
    routes = Failover([A, B], on_switch=lambda before, now: None)
    heartbeat = HttpHeartbeat(routes, KEY, transport=network)
    orders = HttpCentralClient(routes, KEY, transport=network)

    heartbeat.send({"ready": True})
    network.tried.clear()
    orders.find_order("sale-1")

    assert network.tried == [B]  # the heartbeat found A dead: the order path skips it


def test_sync_status_names_the_current_url_of_several(replica) -> None:
    routes = Failover([A, B], on_switch=lambda before, now: None)
    routes.answered(0, 1)
    app = create_app(
        replica,
        SyncProgress(),
        store_id="s1",
        topics=topic_names(""),
        terminal_token=TERMINAL_TOKEN,
        central_at=routes,
    )

    status = terminal_client(app).get("/sync/status").json()

    assert (status["central_url"], status["central_urls"]) == (B, [A, B])


def test_sync_status_says_nothing_of_a_single_url(replica) -> None:
    app = create_app(
        replica,
        SyncProgress(),
        store_id="s1",
        topics=topic_names(""),
        terminal_token=TERMINAL_TOKEN,
        central_at=shared_failover(A),
    )

    status = terminal_client(app).get("/sync/status").json()

    assert "central_url" not in status and "central_urls" not in status


def test_without_a_central_there_is_no_failover() -> None:
    assert shared_failover(None) is None
    assert isinstance(shared_failover(f"{A},{B}"), Failover)


def test_an_http_error_body_is_still_central_s_answer_on_the_second_url() -> None:
    def refusing_a(request: httpx.Request) -> httpx.Response:
        if request.url.host == "central-a.test":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(404, json={"error": {"code": "order.not_found", "message": "no"}})

    client = HttpCentralClient(f"{A},{B}", KEY, transport=httpx.MockTransport(refusing_a))

    with pytest.raises(CentralUnavailable) as caught:
        client.cancel_order("o-1")

    assert "order.not_found" in caught.value.message
