"""Every failure becomes one stderr line (or a JSON error object) and a contract exit code."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.support.invctl_fakes import FAKE_AGENT as AGENT
from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

STATUS_EXITS = [
    (400, "request.malformed", 1),
    (401, "auth.required", 6),
    (403, "auth.forbidden", 6),
    (404, "product.not_found", 3),
    (409, "stock.negative", 4),
    (422, "request.invalid", 1),
    (500, "boom", 1),
    (502, "gateway", 5),
    (503, "database.unavailable", 5),
    (504, "gateway.timeout", 5),
]


@pytest.mark.parametrize(("status", "code", "exit_code"), STATUS_EXITS)
def test_http_status_maps_to_contract_exit_code(
    cli: CliHarness, server: FakeServer, status: int, code: str, exit_code: int
) -> None:
    server.on("GET", f"{AGENT}/stock/MILK", status, error_body(code, f"said {status}"))

    result = cli("stock", "show", "MILK")

    assert result.exit_code == exit_code
    assert f"error: said {status} [{code}]" in result.stderr
    assert "Traceback" not in result.output


def test_refusal_shows_the_servers_code_and_message(cli: CliHarness, server: FakeServer) -> None:
    url = f"{CENTRAL}/api/v1/stock/MILK/adjustments"
    server.on("POST", url, 409, error_body("stock.negative", "only 2 left of MILK"))

    result = cli("--central", CENTRAL, "stock", "adjust", "MILK", "-5")

    assert result.exit_code == 4
    assert result.stderr.splitlines()[0] == "error: only 2 left of MILK [stock.negative]"


def test_unauthorised_hints_at_login(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{CENTRAL}/api/v1/categories", 401, error_body("auth.required", "log in"))

    result = cli("--central", CENTRAL, "category", "list")

    assert result.exit_code == 6
    assert "hint:" in result.stderr
    assert "invctl login" in result.stderr


def test_validation_error_lists_the_servers_details(cli: CliHarness, server: FakeServer) -> None:
    body = error_body("price.invalid", "bad price", field="price")
    server.on("POST", f"{CENTRAL}/api/v1/products", 422, body)
    server.on("GET", f"{CENTRAL}/api/v1/categories", 200, {"items": [{"id": 1, "name": "A"}]})

    result = cli(
        "--central",
        CENTRAL,
        "product",
        "add",
        "MILK",
        "--name",
        "Milk",
        "--price",
        "1",
        "--category",
        "1",
    )

    assert result.exit_code == 1
    assert "[price.invalid]" in result.stderr
    assert "field: price" in result.stderr


def test_error_without_json_body_still_maps(cli: CliHarness, server: FakeServer) -> None:
    server.on_call("GET", f"{AGENT}/stock/MILK", lambda _r: httpx.Response(404, text="nope"))

    result = cli("stock", "show", "MILK")

    assert result.exit_code == 3
    assert "error: the agent answered HTTP 404 [not_found]" in result.stderr


def _refused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_unavailable(cli: CliHarness) -> None:
    from typer.testing import CliRunner

    from invctl.main import app

    url = f"http://127.0.0.1:{_refused_port()}"
    result = CliRunner().invoke(app, ["--agent", url, "stock", "show", "MILK"], env=cli.env)

    assert result.exit_code == 5
    assert "connection refused" in result.stderr
    assert f"is the agent running at {url}?" in result.stderr


def test_timeout_is_unavailable(cli: CliHarness, server: FakeServer) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    server.on_call("GET", f"{AGENT}/sync/status", slow)

    result = cli("--timeout", "0.5", "sync", "status")

    assert result.exit_code == 5
    assert "timed out after 0.5s" in result.stderr


def test_json_mode_prints_the_error_object_on_stdout(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/stock/GONE", 404, error_body("product.not_found", "no GONE"))

    result = cli("--json", "stock", "show", "GONE")

    assert result.exit_code == 3
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "product.not_found"
    assert error["exit_code"] == 3
    assert len(error["request_id"]) == 32


def test_per_command_json_flag_also_formats_errors(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{AGENT}/stock/GONE", 404, error_body("product.not_found", "no GONE"))

    result = cli("stock", "show", "GONE", "--json")

    assert json.loads(result.stdout)["error"]["message"] == "no GONE"


def test_admin_command_without_central_is_a_usage_error(
    cli: CliHarness, server: FakeServer
) -> None:
    result = cli("category", "add", "Dairy")

    assert result.exit_code == 2
    assert "no central URL is configured" in result.stderr
    assert "--central URL" in result.stderr
    assert server.requests == []


def test_unexpected_exception_is_reported_without_traceback(
    cli: CliHarness, server: FakeServer
) -> None:
    def broken(_request: httpx.Request) -> httpx.Response:
        raise RuntimeError("kaboom")

    server.on_call("GET", f"{AGENT}/stock/MILK", broken)

    result = cli("stock", "show", "MILK", env={"INVCTL_DEBUG": None})

    assert result.exit_code == 1
    assert "error: internal error: RuntimeError: kaboom [internal]" in result.stderr
    assert "Traceback" not in result.output


def test_non_json_success_answer_is_an_error(cli: CliHarness, server: FakeServer) -> None:
    server.on_call("GET", f"{AGENT}/stock/MILK", lambda _r: httpx.Response(200, text="<html>"))

    result = cli("stock", "show", "MILK")

    assert result.exit_code == 1
    assert "not JSON" in result.stderr


def test_bad_url_is_a_usage_error(cli: CliHarness) -> None:
    result = cli("--agent", "ftp://x", "stock", "show", "MILK")

    assert result.exit_code == 2
    assert "not an http(s) URL" in result.stderr


def test_interrupt_exits_130_quietly(cli: CliHarness, server: FakeServer) -> None:
    def interrupted(_request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    server.on_call("GET", f"{AGENT}/stock/MILK", interrupted)

    result = cli("stock", "show", "MILK")

    assert result.exit_code == 130
    assert "Traceback" not in result.output
