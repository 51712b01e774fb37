"""storeagent.ops.runtime: the agent process's interpreter settings."""

import gc
import sys
from collections.abc import Iterator

import pytest

from storeagent.ops import runtime


@pytest.fixture
def restored() -> Iterator[None]:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    sys.setswitchinterval(interval)


def test_tune_sets_the_switch_interval_and_the_collectors_thresholds(restored):
    runtime.tune()

    assert sys.getswitchinterval() == pytest.approx(runtime.SWITCH_INTERVAL_S)
    assert gc.get_threshold() == runtime.GC_THRESHOLDS


def test_settle_freezes_what_start_up_made(restored):
    made_at_start = {"tracked": [1, 2, 3]}
    before = gc.get_freeze_count()

    runtime.settle()

    assert gc.get_freeze_count() > before
    assert gc.is_tracked(made_at_start)
