"""Migration 8 (store_refusals) on a database from before it, on SQLite and MariaDB; and a
refused store key recorded there, at most once per resolution, the answer unchanged."""

from __future__ import annotations

from datetime import timedelta

from central import migrations, models
from central.db import connect
from central.services.fleet import REFUSAL_RESOLUTION, record_refusal
from tests.support.central_fakes import FakeClock
from tests.support.central_harness import running_central

API = "/api/v1"
BEFORE = [version for version, _, _ in migrations.MIGRATIONS if version < 8]
LATER = [version for version, _, _ in migrations.MIGRATIONS if version >= 8]


def database_before_migration_8(url: str) -> None:
    db = connect(url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    with db.connection_context():
        db.create_tables([models.SchemaMigration])
        for version, name, step in migrations.MIGRATIONS:
            if version in BEFORE:
                step(db)
                models.SchemaMigration.create(version=version, name=name)
        assert not db.table_exists("store_refusals")
    db.close()


def test_migration_8_adds_the_refusals_and_a_revoked_key_is_recorded_once(database_url):
    database_before_migration_8(database_url)
    with running_central(database_url) as h:
        admin = h.admin()
        made = h.call("POST", f"{API}/stores", admin, json={"id": "north", "name": "North"})
        h.call("DELETE", f"{API}/stores/north/keys/{made['key_id']}", admin)
        revoked = {"X-API-Key": made["api_key"]}

        answers = [
            h.client.post(f"{API}/stores/heartbeat", headers=revoked, json={"ready": True})
            for _ in range(3)
        ]
        fleet = h.call("GET", f"{API}/sync/stores", admin)["items"]
        db = h.central.db
        with db.connection_context():
            applied = {row.version for row in models.SchemaMigration.select()}
            refusals = [(r.store_id, r.last_refused) for r in models.StoreRefusal.select()]

    assert set(LATER) <= applied
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (401, "auth.invalid")
    ] * 3
    assert [store_id for store_id, _ in refusals] == ["north"]
    (row,) = fleet
    assert (row["state"], row["healthy"], row["ready"]) == ("auth_failed", False, None)
    assert row["last_refused"] is not None


def test_the_conditional_update_writes_only_an_old_refusal(database_url):
    """Straight at the service, with central's clock moved by hand: two refusals within the
    resolution leave the first time; one after it replaces it (the same SQL on both
    databases)."""
    with running_central(database_url) as h:
        h.call("POST", f"{API}/stores", h.admin(), json={"id": "north", "name": "North"})
        clock = FakeClock()
        h.central.clock = clock
        uow = h.central.uow
        record_refusal(uow(), "north")
        first = clock.current
        clock.advance(REFUSAL_RESOLUTION.total_seconds() - 1)
        record_refusal(uow(), "north")
        kept = _refused_at(h.central.db)
        clock.advance(2)
        record_refusal(uow(), "north")
        later = _refused_at(h.central.db)

    assert kept == first
    assert later == first + REFUSAL_RESOLUTION + timedelta(seconds=1)


def _refused_at(db):
    with db.connection_context():
        return models.StoreRefusal.get(models.StoreRefusal.store_id == "north").last_refused
