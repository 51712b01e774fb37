"""The files central reads or makes: a config or secret file others may read is refused with
the fix; the database must be usable at start, and a SQLite file is this user's only."""

from __future__ import annotations

import logging
import re
import secrets
import sqlite3
import stat
from pathlib import Path

import pytest

from central.db import connect
from central.settings import load, read_secret_file
from invwire.errors.central import ConfigError, ConfigFileInsecure, DatabaseConfigError


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_config_file_its_group_or_others_may_read_is_refused_with_the_fix(
    tmp_path: Path, mode: int
) -> None:
    config = write(tmp_path / "central.toml", "[central]\nport = 7000\n", mode)

    with pytest.raises(ConfigFileInsecure) as caught:
        load(config_file=config, env={"INVCTL_JWT_SECRET": secrets.token_hex(32)})

    assert caught.value.code == "config.file_insecure"
    assert caught.value.message == (
        f"config file {config} is accessible to other users (mode {mode:o}); "
        f"run: chmod 600 {config}"
    )


def test_a_private_config_file_may_hold_the_secret(tmp_path: Path) -> None:
    secret = secrets.token_hex(32)
    config = write(tmp_path / "central.toml", f'[central]\njwt_secret = "{secret}"\n', 0o600)

    assert load(config_file=config, env={}).jwt_secret == secret


def test_a_config_file_that_is_not_utf8_is_one_config_error(tmp_path: Path) -> None:
    config = tmp_path / "central.toml"
    config.write_bytes(b"[central]\nport = \xff\n")
    config.chmod(0o600)

    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load(config_file=config, env={})


def test_a_secret_file_its_group_may_read_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "relay.password", "pw\n", 0o640)

    with pytest.raises(ConfigFileInsecure, match=r"mode 640\); run: chmod 600 "):
        read_secret_file(path, "INVCTL_KAFKA_PASSWORD_FILE")


def test_a_new_sqlite_database_is_created_0600_and_so_are_its_wal_and_shm(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "central.db"

    db = connect(f"sqlite:///{path}")
    db.execute_sql("CREATE TABLE t (x INTEGER)")
    db.execute_sql("INSERT INTO t VALUES (1)")
    companions = [path.with_name("central.db-wal"), path.with_name("central.db-shm")]
    modes = {p.name: mode_of(p) for p in [path, *companions]}
    db.close_all()

    assert modes == {"central.db": 0o600, "central.db-wal": 0o600, "central.db-shm": 0o600}


def test_a_wider_existing_database_is_made_0600_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "central.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="central.db"):
        connect(f"sqlite:///{path}").close_all()

    assert mode_of(path) == 0o600
    [record] = [r for r in caplog.records if r.msg == "database.mode_tightened"]
    assert record.event_fields == {"path": str(path), "mode_was": "644", "mode": "600"}


def test_a_directory_is_no_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseConfigError, match="is a directory, not a SQLite database"):
        connect(f"sqlite:///{tmp_path}")


def test_an_existing_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    notes = write(tmp_path / "notes.txt", "root:x:0:0:root:/root:/bin/bash\n", 0o644)

    with pytest.raises(DatabaseConfigError) as caught:
        connect(f"sqlite:///{notes}")

    assert caught.value.code == "config.database"
    assert "exists and is not a SQLite database" in caught.value.message
    assert (notes.read_text(), mode_of(notes)) == ("root:x:0:0:root:/root:/bin/bash\n", 0o644)


def test_a_database_under_a_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "file", "", 0o600)

    with pytest.raises(DatabaseConfigError, match="cannot create the directory"):
        connect(f"sqlite:///{tmp_path / 'file' / 'central.db'}")


@pytest.mark.parametrize("port", ["abc", "99999"])
def test_a_mysql_url_with_a_bad_port_is_refused_without_the_password(port: str) -> None:
    with pytest.raises(DatabaseConfigError) as caught:
        connect(f"mysql://u:hunter2@db.example:{port}/inventory")

    assert "port in INVCTL_DATABASE_URL" in caught.value.message
    assert "hunter2" not in caught.value.message


def test_a_mysql_server_that_is_not_there_is_a_config_error_naming_host_not_password() -> None:
    with pytest.raises(DatabaseConfigError) as caught:
        connect("mysql://u:hunter2@127.0.0.1:1/inventory")

    assert re.match(
        r"cannot use the database 127\.0\.0\.1:1/inventory: .*2003", caught.value.message
    )
    assert "hunter2" not in caught.value.message
