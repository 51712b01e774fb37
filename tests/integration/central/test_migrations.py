"""Upgrades run in place: a database at an older schema keeps its data and gains the rest."""

from central import migrations, models
from central.db import connect


def test_an_older_schema_is_upgraded_without_losing_data(database_url):
    db = connect(database_url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    with db.connection_context():
        db.create_tables([models.SchemaMigration])
        first_version, name, initial = migrations.MIGRATIONS[0]
        initial(db)
        models.SchemaMigration.create(version=first_version, name=name)
        category = models.Category.create(name="Kept")
        assert not db.table_exists("orders")

    assert migrations.pending(db) == [v for v, _, _ in migrations.MIGRATIONS[1:]]
    applied = migrations.migrate(db)

    assert applied == [v for v, _, _ in migrations.MIGRATIONS[1:]]
    assert migrations.pending(db) == []
    with db.connection_context():
        assert db.table_exists("orders") and db.table_exists("order_lines")
        assert models.Category.get_by_id(category.id).name == "Kept"
    assert migrations.migrate(db) == [], "a second run is a no-op"
    db.close()
