import pytest

from central.app import Central, bootstrap
from central.services.principal import Principal
from central.settings import Settings
from tests.support.central_fakes import FakeClock, FakePublisher

ADMIN = Principal("alice", "admin")


@pytest.fixture
def publisher():
    return FakePublisher()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def central(tmp_path, publisher, clock):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'central.db'}", jwt_secret="k" * 32)
    app: Central = bootstrap(settings, publisher=publisher, clock=clock, with_relay=True)
    yield app
    app.close()
