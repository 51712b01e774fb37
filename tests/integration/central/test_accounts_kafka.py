"""Against the secure Kafka broker: deactivating a store deletes the SCRAM users of all its
keys through the revocation path, so none of its keys logs in to Kafka any more."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient

from central.services.identities import pending_revocations
from invwire.identity import kafka_username
from tests.support.central_harness import running_central


def scram_users_with_credentials(kafka_cluster, usernames: list[str]) -> set[str]:
    admin = KafkaAdminClient(
        bootstrap_servers=kafka_cluster.bootstrap, **kafka_cluster.admin_config()
    )
    try:
        described = admin.describe_user_scram_credentials(usernames)
    finally:
        admin.close()
    return {name for name, info in described.items() if info["credential_infos"]}


def test_deactivating_a_store_deletes_the_kafka_users_of_all_its_keys(
    tmp_path, kafka_cluster, topic_prefix, unique_id
):
    if not kafka_cluster.secure:
        pytest.fail("this test needs the secure broker (INVCTL_TEST_KAFKA_ENV)")
    store_id = f"s-{unique_id}"
    with running_central(f"sqlite:///{tmp_path / 'c.db'}", kafka_cluster, topic_prefix) as h:
        admin = h.admin()
        first = h.call("POST", "/api/v1/stores", admin, json={"id": store_id, "name": "S"})
        second = h.call("POST", f"/api/v1/stores/{store_id}/keys", admin)
        users = [kafka_username(store_id, key["api_key"]) for key in (first, second)]
        assert scram_users_with_credentials(kafka_cluster, users) == set(users)

        answer = h.call("POST", f"/api/v1/stores/{store_id}/deactivate", admin)

        assert answer["revoked_keys"] == 2
        assert scram_users_with_credentials(kafka_cluster, users) == set()
        assert pending_revocations(h.central.uow()) == []
