"""The pieces central and the agent share for their clients: the Kafka login settings, the
secret file reader and the HTTP metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from invwire.files import SharedFile, UnusableFile, read_private_text
from invwire.kafka import login_config
from invwire.metrics import HttpMetrics

pytestmark = pytest.mark.unit


def login(protocol: str) -> dict[str, object]:
    return login_config(
        protocol, mechanism="SCRAM-SHA-256", username="u", password="p", ca_file=None
    )


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", ""])
def test_anything_but_sasl_ssl_logs_in_as_nobody(protocol: str) -> None:
    assert login(protocol) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_checks_the_broker_host_and_logs_in_with_scram() -> None:
    assert login("SASL_SSL") == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
        "ssl_cafile": None,
        "ssl_check_hostname": True,
    }


def secret_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "secret"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_a_private_secret_file_is_read_stripped(tmp_path: Path) -> None:
    assert read_private_text(secret_file(tmp_path, " sk-1 \n", 0o600), "key file") == "sk-1"


def test_a_secret_file_its_group_may_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "sk-1", 0o640)

    with pytest.raises(SharedFile) as refused:
        read_private_text(path, "key file")

    assert refused.value.message.startswith(f"key file {path} is accessible to other users")
    assert f"chmod 600 {path}" in refused.value.message


@pytest.mark.parametrize("content", [None, b"\xff\xfe"], ids=["missing", "not-utf8"])
def test_an_unreadable_secret_file_is_refused_by_name(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)

    with pytest.raises(UnusableFile) as refused:
        read_private_text(path, "key file")

    assert not isinstance(refused.value, SharedFile)
    assert refused.value.message.startswith(f"cannot read key file {path}: ")


def test_http_metrics_count_and_time_requests_under_the_names_given() -> None:
    registry = CollectorRegistry()
    http = HttpMetrics(
        registry, requests=("x_requests_total", "requests"), latency=("x_seconds", "latency")
    )

    http.observe("GET", "/items", 200, 0.003)
    http.observe("GET", "/items", 200, 0.2)

    labels = {"method": "GET", "route": "/items"}
    assert registry.get_sample_value("x_requests_total", {**labels, "status": "200"}) == 2
    assert registry.get_sample_value("x_seconds_count", labels) == 2
    assert registry.get_sample_value("x_seconds_bucket", {**labels, "le": "0.005"}) == 1
