from collections.abc import Iterator

import pytest

from storeagent.replica.db import Replica, open_replica
from tests.support.agent_fakes import FixedClock


@pytest.fixture
def replica(tmp_path) -> Iterator[Replica]:
    opened = open_replica(tmp_path / "replica.db")
    yield opened
    opened.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()
