"""Migration 5 on a database from before it: its users gain a token version (and keep their
passwords), and the login counters' table appears; on SQLite and MariaDB."""

from __future__ import annotations

from playhouse.migrate import SchemaMigrator, migrate

from central import migrations, models, security
from central.db import connect
from tests.support.central_harness import running_central

PASSWORD = "an-old-users-password"
LATER = [version for version, _, _ in migrations.MIGRATIONS[4:]]  # 5 and any after it


def database_before_migration_5(url: str):
    """Migrations 1-4 applied, and `users` as it was then (without `token_version`), holding
    one admin made the way central made them."""
    db = connect(url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    with db.connection_context():
        db.create_tables([models.SchemaMigration])
        for version, name, step in migrations.MIGRATIONS[:4]:
            step(db)
            models.SchemaMigration.create(version=version, name=name)
        migrate(SchemaMigrator.from_database(db).drop_column("users", "token_version"))
        p = db.param
        db.execute_sql(
            f"INSERT INTO users (username, password_hash, role, active, created_at) "
            f"VALUES ({p}, {p}, {p}, {p}, {p})",
            ("old-admin", security.hash_password(PASSWORD), "admin", True, models.utcnow()),
        )
    return db


def test_users_from_before_token_versions_gain_one_and_can_log_in(database_url):
    db = database_before_migration_5(database_url)
    assert migrations.pending(db) == LATER

    assert migrations.migrate(db) == LATER

    with db.connection_context():
        columns = {column.name for column in db.get_columns("users")}
        assert "token_version" in columns and db.table_exists("login_counters")
        assert models.User.get(models.User.username == "old-admin").token_version == 1
    db.close()
    with running_central(database_url) as h:
        token = h.as_user("old-admin", PASSWORD)
        assert h.client.get("/api/v1/auth/me", headers=token).json()["subject"] == "old-admin"


def test_migration_5_on_a_database_created_today_only_adds_the_counters(database_url):
    db = connect(database_url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    with db.connection_context():
        db.create_tables([models.SchemaMigration])
        for version, name, step in migrations.MIGRATIONS[:4]:
            step(db)
            models.SchemaMigration.create(version=version, name=name)

    assert migrations.migrate(db) == LATER
    with db.connection_context():
        assert db.table_exists("login_counters")
    db.close()
