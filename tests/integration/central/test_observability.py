"""Central's /metrics moves with a workload; request ids come back and reach the logs."""

import logging
import uuid

from prometheus_client.parser import text_string_to_metric_families

from harness.waiting import eventually
from tests.support.central_harness import running_central


def scrape(h):
    text = h.client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_a_scripted_workload(database_url, kafka_cluster, topic_prefix):
    with running_central(database_url, kafka_cluster, topic_prefix) as h:
        admin = h.admin()
        cat = h.call("POST", "/api/v1/categories", admin, json={"name": "C"})
        h.call(
            "POST",
            "/api/v1/products",
            admin,
            json={"sku": "A", "name": "A", "price": "1", "category_id": cat["id"]},
        )
        h.call("PUT", "/api/v1/stock/A", admin, json={"quantity": 3})
        key = h.call("POST", "/api/v1/stores", admin, json={"id": "s1", "name": "S"})["api_key"]
        store = {"X-API-Key": key}
        eventually(lambda: h.central.relay.backlog() == 0, what="outbox drained")
        before = scrape(h)
        for n in range(3):
            h.client.post(
                "/api/v1/orders",
                json={"lines": [{"sku": "A", "quantity": 1}]},
                headers={**store, "Idempotency-Key": f"k{n}"},
            )
        h.client.post(
            "/api/v1/orders",
            json={"lines": [{"sku": "A", "quantity": 1}]},
            headers={**store, "Idempotency-Key": "k0"},
        )
        refused = h.client.post(
            "/api/v1/orders",
            json={"lines": [{"sku": "A", "quantity": 1}]},
            headers={**store, "Idempotency-Key": "k9"},
        )
        assert refused.status_code == 409
        eventually(lambda: h.central.relay.backlog() == 0, what="outbox drained")
        after = scrape(h)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("invctl_orders_total", outcome="confirmed") == 3
    assert grew("invctl_orders_total", outcome="replayed") == 1
    assert grew("invctl_orders_total", outcome="stock.insufficient") == 1
    assert grew("invctl_stock_conflicts_total", code="stock.insufficient") == 1
    assert (
        grew("invctl_http_requests_total", method="POST", route="/api/v1/orders", status="201") == 4
    )
    assert grew("invctl_outbox_published_total") == 3
    assert grew("invctl_outbox_publish_latency_seconds_count") == 3
    assert value(after, "invctl_outbox_backlog") == 0
    assert not any(
        name == "invctl_http_requests_total" and ("route", "/api/v1/stock/A") in labels
        for name, labels in after
    ), "routes are templates, not raw paths"


def test_request_id_is_echoed_and_logged(database_url, caplog):
    request_id = uuid.uuid4().hex
    with running_central(database_url) as h, caplog.at_level(logging.DEBUG, "central.http"):
        response = h.client.get("/healthz", headers={"X-Request-ID": request_id})
        generated = h.client.get("/healthz").headers["X-Request-ID"]
        bad = h.client.get("/healthz", headers={"X-Request-ID": "x" * 500}).headers["X-Request-ID"]
    assert response.headers["X-Request-ID"] == request_id
    assert len(generated) == 32 and generated != request_id
    assert bad != "x" * 500, "an oversized id is replaced, not echoed"
    logged = [r.event_fields for r in caplog.records if r.msg == "http.request"]
    # Probes are logged at debug, like the agent's: they would drown the access log.
    assert any(f["route"] == "/healthz" and f["status"] == 200 for f in logged)
