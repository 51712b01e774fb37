"""`central backup` / `central restore` on SQLite files: the manifest is read from the
snapshot, a restore starts a new epoch and keeps the replaced file, and every refusal
changes nothing."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import tarfile
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from central import migrations
from central.backup import (
    MANIFEST_NAME,
    MariadbLogin,
    dump_facts,
    make_backup,
    option_file_text,
    read_manifest,
)
from central.models import utcnow
from central.restore import restore_backup, sqlite_in_use
from central.services import catalog, inventory, orders
from central.services.principal import Principal, Role
from invwire.errors.central import (
    BackupChecksumMismatch,
    BackupExists,
    BackupFailed,
    BackupInvalid,
    BackupSchemaTooNew,
    BackupWrongDatabase,
    CentralRunning,
    RestoreUnconfirmed,
)

from .conftest import ADMIN

STORE = Principal("store-1", Role.STORE, "store-1")


def yes(manifest, where) -> bool:
    return True


def sql(path: Path, query: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(query).fetchall()


@pytest.fixture
def shop(central):
    """Two products with stock and three orders: 3 + 2 + 1 units of APPLE, 4 of PEAR."""
    category = catalog.create_category(central.uow(), "Fruit")
    for sku in ("APPLE", "PEAR"):
        new = catalog.NewProduct(sku=sku, name=sku, price="1.00", category_id=category["id"])
        catalog.create_product(central.uow(), new)
        inventory.set_stock(central.uow(), ADMIN, sku, 50)
    for key, lines in [
        ("k1", [{"sku": "APPLE", "quantity": 3}, {"sku": "PEAR", "quantity": 4}]),
        ("k2", [{"sku": "APPLE", "quantity": 2}]),
        ("k3", [{"sku": "APPLE", "quantity": 1}]),
    ]:
        orders.place_order(central.uow(), STORE, key, lines)
    return central


def source_path(central) -> Path:
    return Path(central.settings.database_url.removeprefix("sqlite:///"))


def test_the_manifest_counts_what_the_snapshot_holds(shop, tmp_path):
    target = tmp_path / "central.backup"
    manifest = make_backup(shop.settings.database_url, target, utcnow())

    outbox_ids = sql(source_path(shop), "SELECT MAX(id), COUNT(*) FROM outbox")[0]
    assert read_manifest(target) == manifest
    assert manifest.facts.outbox_position == outbox_ids[0]
    assert manifest.facts.outbox_unpublished == outbox_ids[1]  # the relay never ran
    assert manifest.facts.counts == {
        "categories": 1,
        "products": 2,
        "stock": 2,
        "orders": 3,
        "order_lines": 4,
        "movements": 6,  # 2 stock settings + 4 order lines
    }
    assert manifest.facts.schema_version == max(v for v, _, _ in migrations.MIGRATIONS)
    assert manifest.facts.epoch == 1
    assert target.stat().st_mode & 0o777 == 0o600
    with tarfile.open(target) as tar:
        assert sorted(tar.getnames()) == ["database.sqlite3", MANIFEST_NAME]
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("central.db"))
    assert left == ["central.backup"], "no temporary file is left behind"


def test_a_backup_never_overwrites_a_file(shop, tmp_path):
    target = tmp_path / "central.backup"
    target.write_text("keep me")

    with pytest.raises(BackupExists):
        make_backup(shop.settings.database_url, target, utcnow())
    assert target.read_text() == "keep me"


def test_a_restore_brings_the_snapshot_back_and_starts_epoch_two(shop, tmp_path):
    backup = tmp_path / "central.backup"
    make_backup(shop.settings.database_url, backup, utcnow())
    orders.place_order(shop.uow(), STORE, "after", [{"sku": "PEAR", "quantity": 1}])
    restored = tmp_path / "restored" / "central.db"

    done = restore_backup(f"sqlite:///{restored}", backup, utcnow(), yes)

    assert (done.epoch, done.previous_epoch, done.kept_aside) == (2, None, None)
    assert sql(restored, "SELECT COUNT(*) FROM orders") == [(3,)], "not the order made after"
    assert sql(restored, "SELECT sku, quantity FROM stock ORDER BY sku") == [
        ("APPLE", 44),
        ("PEAR", 46),
    ]
    [(cause, position)] = sql(
        restored, "SELECT cause, backup_outbox_position FROM epochs WHERE epoch = 2"
    )
    assert (cause, position) == ("restore", done.manifest.facts.outbox_position)


def test_restoring_over_a_database_keeps_it_aside_and_counts_on(shop, tmp_path):
    backup = tmp_path / "central.backup"
    make_backup(shop.settings.database_url, backup, utcnow())
    target = tmp_path / "target.db"
    restore_backup(f"sqlite:///{target}", backup, utcnow(), yes)

    again = restore_backup(f"sqlite:///{target}", backup, utcnow() + timedelta(seconds=1), yes)

    assert (again.epoch, again.previous_epoch) == (3, 2), "never an epoch published before"
    assert again.kept_aside is not None and again.kept_aside.name.startswith(
        "target.db.before-restore-"
    )
    assert sql(again.kept_aside, "SELECT MAX(epoch) FROM epochs") == [(2,)]


def test_a_restore_drops_the_relay_lease_of_the_backup(shop, tmp_path):
    shop.relay.run_once()  # holds the lease for 60 s
    backup = tmp_path / "central.backup"
    make_backup(shop.settings.database_url, backup, utcnow())
    restored = tmp_path / "restored.db"

    restore_backup(f"sqlite:///{restored}", backup, utcnow(), yes)

    assert sql(restored, "SELECT COUNT(*) FROM relay_lease") == [(0,)]


def test_a_restore_is_refused_while_the_relay_holds_its_lease(shop, tmp_path):
    shop.relay.run_once()
    backup = tmp_path / "central.backup"
    make_backup(shop.settings.database_url, backup, utcnow())

    with pytest.raises(CentralRunning, match="holds its lease"):
        restore_backup(shop.settings.database_url, backup, utcnow(), yes)
    assert sql(source_path(shop), "SELECT COUNT(*) FROM orders") == [(3,)]


def test_a_restore_is_refused_while_another_process_has_the_database_open(shop, tmp_path):
    backup = tmp_path / "central.backup"
    make_backup(shop.settings.database_url, backup, utcnow())
    target = tmp_path / "target.db"
    restore_backup(f"sqlite:///{target}", backup, utcnow(), yes)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            "c.execute('SELECT COUNT(*) FROM orders').fetchall(); print('open', flush=True);"
            "sys.stdin.read()",
            str(target),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        assert sqlite_in_use(target)
        with pytest.raises(CentralRunning, match="another process has the database"):
            restore_backup(f"sqlite:///{target}", backup, utcnow(), yes)
    finally:
        holder.communicate("")
    assert not sqlite_in_use(target)
    assert sql(target, "SELECT MAX(epoch) FROM epochs") == [(2,)], "unchanged"


def test_a_damaged_backup_is_refused_and_nothing_changes(shop, tmp_path):
    backup = tmp_path / "central.backup"
    make_backup(shop.settings.database_url, backup, utcnow())
    data = bytearray(backup.read_bytes())
    with tarfile.open(backup) as tar:
        offset = tar.getmember("database.sqlite3").offset_data
    data[offset + 5000] ^= 0xFF
    backup.write_bytes(bytes(data))
    target = tmp_path / "target.db"

    with pytest.raises(BackupChecksumMismatch):
        restore_backup(f"sqlite:///{target}", backup, utcnow(), yes)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "content", [b"", b"not a tar at all" * 100, b"\x00" * 10240], ids=["empty", "text", "zeros"]
)
def test_a_file_that_is_no_backup_is_refused(tmp_path, content):
    backup = tmp_path / "x.backup"
    backup.write_bytes(content)

    with pytest.raises(BackupInvalid):
        restore_backup(f"sqlite:///{tmp_path / 'c.db'}", backup, utcnow(), yes)


def test_a_missing_backup_file_is_refused(tmp_path):
    with pytest.raises(BackupInvalid, match="there is no file"):
        restore_backup(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "none", utcnow(), yes)


def rewrite_manifest(backup: Path, **changes) -> None:
    with tarfile.open(backup) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST_NAME).read())
        payload = tar.extractfile("database.sqlite3").read()
    manifest.update(changes)
    with tarfile.open(backup, "w") as tar:
        for name, data in [
            (MANIFEST_NAME, json.dumps(manifest).encode()),
            ("database.sqlite3", payload),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_backup_of_a_newer_schema_is_refused(shop, tmp_path):
    backup = tmp_path / "central.backup"
    make_backup(shop.settings.database_url, backup, utcnow())
    rewrite_manifest(backup, schema_version=999)

    with pytest.raises(BackupSchemaTooNew):
        restore_backup(f"sqlite:///{tmp_path / 'c.db'}", backup, utcnow(), yes)


def test_a_sqlite_backup_is_refused_for_a_mariadb_database(shop, tmp_path):
    backup = tmp_path / "central.backup"
    make_backup(shop.settings.database_url, backup, utcnow())

    with pytest.raises(BackupWrongDatabase):
        restore_backup("mysql://u:p@127.0.0.1:1/db", backup, utcnow(), yes)


def test_an_unconfirmed_restore_changes_nothing(shop, tmp_path):
    backup = tmp_path / "central.backup"
    make_backup(shop.settings.database_url, backup, utcnow())
    target = tmp_path / "target.db"

    with pytest.raises(RestoreUnconfirmed):
        restore_backup(f"sqlite:///{target}", backup, utcnow(), lambda m, w: False)
    assert not target.exists()


def test_dump_facts_are_read_from_the_rows_of_the_dump(tmp_path):
    dump = tmp_path / "d.sql"
    dump.write_text(
        "INSERT INTO `schema_migrations` VALUES (8,'x','2024-01-01 00:00:00');\n"
        "INSERT INTO `schema_migrations` VALUES (9,'y','2024-01-01 00:00:00');\n"
        "INSERT INTO `epochs` VALUES (3,'2024-01-01 00:00:00','restore',NULL,NULL,NULL,NULL);\n"
        "INSERT INTO `orders` VALUES (1,'a','s','confirmed','k','f','u','t',NULL,NULL);\n"
        "INSERT INTO `outbox` VALUES (41,'e','t','k','{\\\"a\\\":\\\"1,2\\\"}','t','t2');\n"
        "INSERT INTO `outbox` VALUES (42,'e','t','k','{}','2024-01-01 00:00:00',NULL);\n"
        "-- Dump completed on 2024-01-01\n"
    )

    facts = dump_facts(dump)

    assert (facts.schema_version, facts.epoch) == (9, 3)
    assert (facts.outbox_position, facts.outbox_unpublished) == (42, 1)
    assert facts.counts["orders"] == 1 and facts.counts["products"] == 0


def test_a_dump_cut_short_is_refused(tmp_path):
    dump = tmp_path / "d.sql"
    dump.write_text("INSERT INTO `schema_migrations` VALUES (9,'y','2024-01-01 00:00:00');\n")

    with pytest.raises(BackupFailed, match="incomplete"):
        dump_facts(dump)


def test_the_option_file_quotes_what_it_holds():
    login = MariadbLogin("db.example", 3307, "central", 'p"w\\#x y', "invctl")

    text = option_file_text(login)

    assert 'password="p\\"w\\\\#x y"' in text
    assert "port=3307" in text and "protocol=TCP" in text


def test_epoch_start_time_is_recorded(shop, tmp_path):
    backup = tmp_path / "central.backup"
    make_backup(shop.settings.database_url, backup, utcnow())
    at = datetime(2030, 1, 2, 3, 4, 5)

    restore_backup(f"sqlite:///{tmp_path / 'r.db'}", backup, at, yes)

    assert sql(tmp_path / "r.db", "SELECT started_at FROM epochs WHERE epoch = 2") == [
        ("2030-01-02 03:04:05",)
    ]
