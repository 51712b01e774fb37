"""WriterTurn: SQLite's writers take turns across threads and processes on a lock file."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import peewee
import pytest

from central.db import SerializedSqlite, WriterTurn
from harness.waiting import eventually

HOLDER = """
import sys
from central.db import WriterTurn
turn = WriterTurn(sys.argv[1], 10)
with turn:
    print("held", flush=True)
    sys.stdin.readline()
"""


def free_now(path: Path) -> bool:
    """Whether another process could take the turn at once."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing the descriptor drops a flock taken through it
    return True


@pytest.fixture
def holder(tmp_path: Path):
    """Another process in its turn, until its stdin gets a line."""
    lock = tmp_path / "db-writer.lock"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    yield lock, process
    if process.poll() is None:
        process.kill()
    process.wait(10)


def test_another_process_in_its_turn_keeps_this_one_out_until_it_is_done(holder) -> None:
    lock, process = holder
    assert not free_now(lock)
    with (
        pytest.raises(peewee.OperationalError, match="database is locked"),
        WriterTurn(str(lock), timeout_s=0.01),
    ):
        pass
    assert process.stdin is not None
    process.stdin.write("done\n")
    process.stdin.flush()
    with WriterTurn(str(lock), timeout_s=30):
        assert not free_now(lock)
    assert process.wait(10) == 0
    assert free_now(lock)


def test_a_refused_turn_leaves_the_thread_lock_free(holder) -> None:
    lock, _ = holder
    turn = WriterTurn(str(lock), timeout_s=0.01)
    with pytest.raises(peewee.OperationalError):
        turn.__enter__()
    taken = threading.Event()

    def other_thread() -> None:
        if turn._threads.acquire(blocking=False):
            taken.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert taken.is_set()


def test_a_nested_turn_keeps_the_file_until_the_outermost_ends(tmp_path: Path) -> None:
    lock = tmp_path / "db-writer.lock"
    turn = WriterTurn(str(lock), timeout_s=1)
    with turn:
        with turn:
            assert not free_now(lock)
        assert not free_now(lock)
    assert free_now(lock)


def test_a_database_file_has_its_lock_file_beside_it_and_memory_has_none(tmp_path: Path) -> None:
    on_file = SerializedSqlite(str(tmp_path / "central.db"))
    assert on_file.writer.lock_path == f"{tmp_path / 'central.db'}-writer.lock"
    assert SerializedSqlite(":memory:").writer.lock_path is None


def test_a_wait_given_up_lets_the_file_go_once_it_is_had(holder) -> None:
    lock, process = holder
    turn = WriterTurn(str(lock), timeout_s=0.01)
    with pytest.raises(peewee.OperationalError):
        turn.__enter__()
    assert process.stdin is not None
    process.stdin.write("done\n")
    process.stdin.flush()
    assert process.wait(10) == 0
    # the waiter gets the file once the other process lets it go, and lets it go at once
    eventually(lambda: free_now(lock), 10, "the file let go after the wait given up")
    turn.timeout_s = 10
    with turn:
        assert not free_now(lock)
    turn.close()


def test_a_waiting_turn_is_handed_the_file_when_it_is_let_go(holder) -> None:
    lock, process = holder
    turn = WriterTurn(str(lock), timeout_s=30)
    entered = threading.Event()

    def write() -> None:
        with turn:
            entered.set()

    thread = threading.Thread(target=write)
    thread.start()
    eventually(lambda: turn._waiter is not None, 10, "the writer waiting in the kernel")
    assert not entered.is_set()  # the other process still holds the turn
    assert process.stdin is not None
    process.stdin.write("done\n")
    process.stdin.flush()
    thread.join(30)
    assert entered.is_set()
    turn.close()


def test_closing_lets_the_descriptor_go_and_a_later_turn_opens_it_again(tmp_path: Path) -> None:
    lock = tmp_path / "db-writer.lock"
    turn = WriterTurn(str(lock), timeout_s=1)
    with turn:
        fd = turn._fd
    assert fd is not None
    turn.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    with turn:
        assert not free_now(lock)
    turn.close()
