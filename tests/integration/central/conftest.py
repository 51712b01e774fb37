import pytest

from tests.support.central_harness import mariadb_database, mysql_base_url


@pytest.fixture(params=["sqlite", "mariadb"])
def database_url(request, tmp_path):
    """Each central test runs on SQLite and on the real MariaDB server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'central.db'}"
        return
    with mariadb_database(mysql_base_url()) as url:
        yield url
