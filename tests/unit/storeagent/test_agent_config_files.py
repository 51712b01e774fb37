"""The agent's files: its key file only its owner may read; its replica a SQLite file of its
own, made 0600; a replica path that is a directory or another kind of file is a config error."""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest

from invwire.errors.agent import ConfigError, KeyFileInsecure
from storeagent.replica.db import open_replica
from storeagent.settings import load_settings


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_key_file_its_group_or_others_may_read_is_refused_with_the_fix(
    tmp_path: Path, mode: int
) -> None:
    key = tmp_path / "storeagent.key"
    key.write_text("ik_secret\n")
    key.chmod(mode)

    with pytest.raises(KeyFileInsecure) as caught:
        load_settings({"store_id": "s1", "api_key_file": key}, {})

    assert caught.value.code == "config.key_file_insecure"
    assert caught.value.message == (
        f"API key file {key} is accessible to other users (mode {mode:o}); run: chmod 600 {key}"
    )
    assert "ik_secret" not in caught.value.message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_key_file_only_its_owner_may_read_is_accepted(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "storeagent.key"
    key.write_text("ik_secret\n")
    key.chmod(mode)

    assert load_settings({"store_id": "s1", "api_key_file": key}, {}).api_key == "ik_secret"


def test_a_new_replica_is_created_0600_with_its_wal_and_shm(tmp_path: Path) -> None:
    path = tmp_path / "replica.db"

    replica = open_replica(path)
    modes = {p.name: mode_of(p) for p in tmp_path.iterdir()}
    replica.close()

    assert modes == {"replica.db": 0o600, "replica.db-wal": 0o600, "replica.db-shm": 0o600}


def test_a_wider_existing_replica_is_made_0600_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "replica.db"
    sqlite3.connect(path).close()
    path.chmod(0o664)

    with caplog.at_level(logging.WARNING, logger="storeagent.replica"):
        open_replica(path).close()

    assert mode_of(path) == 0o600
    [record] = [r for r in caplog.records if r.msg == "replica.mode_tightened"]
    assert record.event_fields["mode_was"] == "664"


def test_a_directory_as_the_replica_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        open_replica(tmp_path)

    assert caught.value.code == "config.invalid"
    assert caught.value.details == {"field": "db", "path": str(tmp_path)}
    assert "is a directory, not a SQLite database" in caught.value.message


def test_a_file_that_is_not_sqlite_is_a_config_error_and_left_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n")

    with pytest.raises(ConfigError, match="exists and is not a SQLite database"):
        open_replica(notes)

    assert notes.read_text() == "shopping list\n"


def test_the_settings_refuse_a_replica_path_before_anything_is_made_next_to_it(
    tmp_path: Path,
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n")
    env = {"STOREAGENT_API_KEY": "ik_test"}

    with pytest.raises(ConfigError) as caught:
        load_settings({"store_id": "s1", "db": notes}, env)

    assert caught.value.details == {"field": "db", "path": str(notes)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
