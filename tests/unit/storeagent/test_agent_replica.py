from datetime import UTC, datetime

import pytest

from invwire.errors.agent import ConfigError, ReplicaSchemaTooNew
from storeagent.replica.db import SCHEMA_VERSION, iso, iso_as_sent, open_replica
from storeagent.sync.source import TopicPartition


def test_new_replica_is_wal_with_normal_sync_and_a_schema_version(replica):
    pragma = replica.db.execute_sql

    assert pragma("PRAGMA journal_mode").fetchone() == ("wal",)
    assert pragma("PRAGMA synchronous").fetchone() == (1,)
    assert pragma("PRAGMA busy_timeout").fetchone() == (5000,)
    assert replica.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_reopening_a_replica_keeps_its_rows(tmp_path):
    first = open_replica(tmp_path / "r.db")
    with first.transaction():
        first.save_offsets({TopicPartition("inventory-updated", 2): 41})
    first.close()

    again = open_replica(tmp_path / "r.db")

    assert again.stored_offsets() == {TopicPartition("inventory-updated", 2): 41}


def test_a_second_handle_reads_what_the_first_committed(tmp_path):
    writer = open_replica(tmp_path / "r.db")
    reader = open_replica(tmp_path / "r.db")

    with writer.transaction():
        writer.set_meta({"bootstrapped": "1"})

    assert reader.is_bootstrapped()
    assert reader.db is not writer.db


def test_replica_from_a_newer_agent_is_refused(tmp_path):
    replica = open_replica(tmp_path / "r.db")
    with replica.transaction():
        replica.set_meta({"schema_version": str(SCHEMA_VERSION + 1)})
    replica.close()

    with pytest.raises(ReplicaSchemaTooNew):
        open_replica(tmp_path / "r.db")


def test_a_replica_path_under_a_file_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("")

    with pytest.raises(ConfigError) as caught:
        open_replica(tmp_path / "file" / "r.db")

    assert caught.value.code == "config.invalid"
    assert "cannot create the directory" in caught.value.message


@pytest.mark.parametrize(
    "sent",
    [
        "2026-11-29T10:00:00.123456+00:00",  # central's own form: kept as sent
        "2026-11-29T10:00:00+00:00",  # whole seconds
        "2026-11-29T10:00:00.123456Z",
        "2026-11-29T12:00:00.123456+02:00",
        "2026-11-29T10:00:00,123456+00:00",  # a comma before the fraction
        "2026-W48-7T10:00:00.123456+00:00",  # an ISO week date of the same length
        "2026-11-29 10:00:00.123456+00:00",
    ],
)
def test_a_time_as_sent_is_stored_as_iso_stores_it(sent):
    moment = datetime.fromisoformat(sent).astimezone(UTC)

    assert (
        iso_as_sent(sent, moment)
        == iso(moment)
        == "2026-11-29T10:00:00" + (".123456+00:00" if moment.microsecond else ".000000+00:00")
    )
