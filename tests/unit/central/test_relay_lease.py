"""The relay's lease: short, timed by the database's clock, owned by `host:pid:random`; and
the settings of `central serve --workers` and of the lease."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import re
import secrets
import socket
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from central.db import DatabaseClock
from central.models import RelayLease, utcnow
from central.outbox import LEASE_NAME, Relay
from central.settings import load
from central.supervisor import WorkerApp
from invwire.errors.central import ConfigError
from tests.support.central_fakes import FakeClock, FakePublisher

SECRET = secrets.token_hex(32)


def lease_row(central):
    with central.db.connection_context():
        return RelayLease.get(RelayLease.name == LEASE_NAME)


def relay(central, clock, **kw):
    return Relay(central.db, FakePublisher(), clock, lease_seconds=3, **kw)


def test_the_lease_owner_names_the_host_and_the_pid(central):
    central.relay.run_once()

    owner = lease_row(central).owner
    host = re.escape(socket.gethostname()[:40])
    assert re.fullmatch(rf"{host}:{os.getpid()}:[0-9a-f]{{8}}", owner)
    assert owner == central.relay.owner
    assert len(owner) <= RelayLease.owner.max_length


def test_two_relays_of_one_process_have_different_owners(central, clock):
    assert relay(central, clock).owner != relay(central, clock).owner


def test_the_database_clock_reads_the_databases_utc_time(central):
    before = utcnow()
    now = DatabaseClock(central.db).now()
    after = utcnow()

    assert now.tzinfo is None
    # SQLite's clock is this host's, to the millisecond
    assert before - timedelta(milliseconds=1) <= now <= after


def test_a_relay_whose_own_clock_runs_an_hour_ahead_leaves_a_live_lease_alone(central):
    database = DatabaseClock(central.db)
    holder = relay(central, FakeClock(), lease_clock=database)
    ahead = relay(central, FakeClock(utcnow() + timedelta(hours=1)), lease_clock=database)

    holder.run_once()
    ahead.run_once()

    assert (holder.stats.leader, ahead.stats.leader) == (True, False)
    assert lease_row(central).owner == holder.owner


def test_with_its_own_clock_the_relay_ahead_would_have_taken_it(central):
    """What the database's clock prevents: each relay timing the lease by its own clock."""
    holder = relay(central, FakeClock())
    ahead = relay(central, FakeClock(utcnow() + timedelta(hours=1)))

    holder.run_once()
    ahead.run_once()

    assert lease_row(central).owner == ahead.owner


def test_a_standby_takes_the_lease_once_it_has_run_out_not_before(central):
    clock = FakeClock()
    holder, standby = relay(central, clock), relay(central, clock)
    holder.run_once()

    clock.advance(2.9)
    standby.run_once()
    assert not standby.stats.leader, "the lease has 0.1 s left"

    clock.advance(0.2)
    standby.run_once()
    holder.run_once()
    assert (holder.stats.leader, standby.stats.leader) == (False, True)
    assert lease_row(central).owner == standby.owner


def test_the_holder_renews_once_a_third_of_the_lease_has_passed(central):
    clock = FakeClock()
    holder = relay(central, clock)
    holder.run_once()
    first = lease_row(central).expires_at

    clock.advance(0.9)
    holder.run_once()
    assert lease_row(central).expires_at == first, "not renewed before a third has passed"

    clock.advance(0.2)
    holder.run_once()
    assert lease_row(central).expires_at == clock.now() + timedelta(seconds=3)


def test_a_live_holder_keeps_its_lease_round_after_round(central):
    clock = FakeClock()
    holder, standby = relay(central, clock), relay(central, clock)
    for _ in range(20):
        holder.run_once()
        standby.run_once()
        clock.advance(0.5)  # the default poll

    assert (holder.stats.leader, standby.stats.leader) == (True, False)


def test_a_stopped_holder_releases_its_lease_at_once(central):
    clock = FakeClock()
    holder, standby = relay(central, clock), relay(central, clock)
    holder.run_once()
    holder.stop()
    holder.run()  # stops at once: its last act releases the lease

    assert lease_row(central).expires_at < clock.now()
    standby.run_once()
    assert standby.stats.leader


def test_bootstrap_times_the_lease_with_the_database_unless_given_a_clock(tmp_path):
    from central.app import bootstrap
    from central.settings import Settings

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", jwt_secret="k" * 32)
    real = bootstrap(settings, publisher=FakePublisher(), with_relay=True)
    faked = FakeClock()
    tested = bootstrap(settings, publisher=FakePublisher(), clock=faked, with_relay=True)
    try:
        assert real.relay is not None and tested.relay is not None
        assert isinstance(real.relay.lease_clock, DatabaseClock)
        assert tested.relay.lease_clock is faked
        assert real.relay.lease == timedelta(seconds=3)
    finally:
        real.close()
        tested.close()


# --- settings --------------------------------------------------------------------------------


def settings_from(**env: str):
    return load(env={"INVCTL_JWT_SECRET": SECRET, "INVCTL_DATABASE_URL": "sqlite:///x.db", **env})


def test_one_worker_and_a_three_second_lease_by_default():
    settings = settings_from()

    assert (settings.workers, settings.relay_lease_seconds) == (1, 3.0)


def test_workers_come_from_the_environment_or_the_flag():
    assert settings_from(INVCTL_WORKERS="4").workers == 4
    flagged = load(
        {"workers": 8},
        env={
            "INVCTL_JWT_SECRET": SECRET,
            "INVCTL_WORKERS": "4",
            "INVCTL_DATABASE_URL": "sqlite:///x.db",
        },
    )
    assert flagged.workers == 8


@pytest.mark.parametrize("workers", ["0", "65", "-1"])
def test_workers_outside_1_to_64_are_refused(workers):
    with pytest.raises(ConfigError, match=rf"INVCTL_WORKERS .* from 1 to 64, got {workers}"):
        settings_from(INVCTL_WORKERS=workers)


def test_workers_that_are_not_a_number_are_refused():
    with pytest.raises(ConfigError, match="setting workers must be int"):
        settings_from(INVCTL_WORKERS="two")


def test_a_poll_longer_than_a_third_of_the_lease_is_refused(tmp_path):
    config = tmp_path / "central.toml"
    config.write_text("[central]\nrelay_lease_seconds = 3\nrelay_poll_seconds = 1.5\n")
    config.chmod(0o600)

    with pytest.raises(ConfigError, match=r"relay_poll_seconds .* at most a third"):
        load(config_file=config, env={"INVCTL_JWT_SECRET": SECRET})


@pytest.mark.parametrize("lease", ["0.5", "301"])
def test_a_lease_outside_1_to_300_seconds_is_refused(tmp_path, lease):
    config = tmp_path / "central.toml"
    config.write_text(f"[central]\nrelay_lease_seconds = {lease}\n")
    config.chmod(0o600)

    with pytest.raises(ConfigError, match="relay_lease_seconds must be 1 to 300 seconds"):
        load(config_file=config, env={"INVCTL_JWT_SECRET": SECRET})


def test_the_worker_factory_travels_to_a_spawned_worker_with_its_settings():
    app = WorkerApp(settings_from(INVCTL_WORKERS="2"))

    assert pickle.loads(pickle.dumps(app)) == app


def test_central_status_names_the_lease_holder_then_says_it_is_free(central):
    from central.outbox import lease_status

    with central.db.connection_context():
        assert lease_status(central.db) == "relay lease: never taken"
    central.relay.lease_clock = DatabaseClock(central.db)
    central.relay.run_once()
    with central.db.connection_context():
        assert lease_status(central.db).startswith(
            f"relay lease: held by {central.relay.owner} for "
        )
    central.relay.stop()
    central.relay.run()
    with central.db.connection_context():
        assert lease_status(central.db).startswith(
            f"relay lease: free (last held by {central.relay.owner}, "
        )


# --- the worker process's app factory ----------------------------------------------------------


@pytest.fixture
def logging_kept():
    """WorkerApp configures the worker process's logging: put this process's back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_worker_that_cannot_start_exits_so_that_uvicorn_stops_every_worker(
    tmp_path, logging_kept, capfd
):
    from uvicorn.config import STARTUP_FAILURE

    (tmp_path / "a-directory.db").mkdir()
    broken = settings_from(INVCTL_DATABASE_URL=f"sqlite:///{tmp_path / 'a-directory.db'}")

    with pytest.raises(SystemExit) as exited:
        WorkerApp(broken)()

    assert exited.value.code == STARTUP_FAILURE  # not restarted for ever, as a crash would be
    (line,) = [json.loads(x) for x in capfd.readouterr().err.splitlines() if "start_failed" in x]
    assert (line["event"], line["code"], line["pid"]) == (
        "worker.start_failed",
        "config.database",
        os.getpid(),
    )


def test_a_worker_closes_its_central_after_the_apps_own_shutdown():
    from central.supervisor import closing_after

    done: list[str] = []

    @asynccontextmanager
    async def lifespan(app):
        yield
        done.append("relay stopped")

    async def serve() -> None:
        async with closing_after(lifespan, lambda: done.append("closed"))(None):
            done.append("serving")

    asyncio.run(serve())

    assert done == ["serving", "relay stopped", "closed"]


def test_a_standby_readies_its_publisher_once_while_it_waits(central):
    clock = FakeClock()
    holder = relay(central, clock)
    standby = Relay(central.db, publisher := FakePublisher(), clock, lease_seconds=3)
    holder.run_once()

    for _ in range(3):
        standby.run_once()
        clock.advance(0.5)

    assert publisher.warmed == 1 and publisher.published == []


def test_the_lease_holder_looks_for_other_processes_rows_soon_and_a_standby_seldom(central):
    database = DatabaseClock(central.db)
    holder, standby = (
        relay(
            central, FakeClock(), lease_clock=database, poll_seconds=0.5, leader_poll_seconds=0.02
        )
        for _ in range(2)
    )
    assert holder.idle_seconds() == 0.5  # no lease yet

    holder.run_once()
    standby.run_once()

    assert holder.stats.leader and holder.idle_seconds() == 0.02
    assert not standby.stats.leader and standby.idle_seconds() == 0.5


def test_a_holder_not_given_its_own_poll_waits_the_relays_poll(central):
    holder = relay(central, FakeClock(), lease_clock=DatabaseClock(central.db), poll_seconds=0.5)

    holder.run_once()

    assert holder.stats.leader and holder.idle_seconds() == 0.5


def test_the_settings_give_the_holder_a_poll_of_20_ms_by_default():
    assert settings_from().relay_leader_poll_seconds == 0.02


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("relay_leader_poll_seconds = 0.001", "relay_leader_poll_seconds must be 0.005 to 100"),
        ("relay_leader_poll_seconds = 0.8", r"relay_leader_poll_seconds \(0.8\) must be at most"),
    ],
)
def test_a_holder_poll_out_of_bounds_is_refused(tmp_path, text, refusal):
    config = tmp_path / "central.toml"
    config.write_text(f"[central]\n{text}\n")
    config.chmod(0o600)

    with pytest.raises(ConfigError, match=refusal):
        load(config_file=config, env={"INVCTL_JWT_SECRET": SECRET})
