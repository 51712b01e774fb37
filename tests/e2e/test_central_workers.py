"""`central serve --workers 2`: two API processes on one port, each with its own relay, one
of which holds the lease; a worker that dies is replaced; SIGTERM stops all of it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import httpx

from harness.relay_lease import log_events, read_lease, worker_pids
from harness.waiting import eventually
from tests.support.processes import BIN, SECRET, Service, Stack, stack


def answered_by(s: Stack, central: Service) -> int:
    """One request on a new connection; the pid of the worker that served it (its log line
    carries the request id sent)."""
    request_id = uuid.uuid4().hex
    response = httpx.get(
        f"{s.central_url}/api/v1/auth/me", headers={"X-Request-ID": request_id}, timeout=10
    )
    assert response.status_code == 401  # any answer will do: a request that was served

    def logged() -> int:
        lines = log_events(central.log_lines(), "http.request")
        return next(int(r["pid"]) for r in lines if r.get("request_id") == request_id)

    return eventually(logged, 10, "the request's log line", ignoring=(StopIteration,))


def each_answers(s: Stack, central: Service, workers: set[int]) -> None:
    """Requests on new connections until each of `workers` has served one."""
    served_by: set[int] = set()

    def all_served() -> bool:
        served_by.add(answered_by(s, central))
        return workers <= served_by

    eventually(all_served, 60, f"a request served by each of {workers}", interval=0)


def two_workers(central: Service) -> set[int]:
    pids = worker_pids(central.process.pid)
    assert len(pids) == 2, pids
    return pids


def test_two_workers_answer_on_one_port_and_sigterm_stops_them_cleanly(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        central = s.start_central(["--workers", "2"])
        workers = eventually(lambda: two_workers(central), what="two workers")
        each_answers(s, central, workers)
        holder = eventually(lambda: read_lease(s.central_env()["INVCTL_DATABASE_URL"]))
        assert holder.pid in workers and holder.held

        assert central.stop(signal.SIGTERM, timeout=30) == 0
        assert worker_pids(central.process.pid) == set()
        lease = read_lease(s.central_env()["INVCTL_DATABASE_URL"])
        assert lease is not None and not lease.held, "released, not left to run out"
        # The holder releases it as it stops; the other worker, stopping a moment later, may
        # take it in between (its relay still runs until its own stop) and releases it in turn.
        releases = log_events(central.log_lines(), "relay.lease_released")
        assert 1 <= len(releases) <= 2 and {r["pid"] for r in releases} <= workers
        assert releases[-1]["owner"] == lease.owner and releases[-1]["pid"] == lease.pid
        assert {r["pid"] for r in log_events(central.log_lines(), "http.request")} == workers


def test_a_killed_worker_is_replaced_and_requests_are_answered_meanwhile(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        central = s.start_central(["--workers", "2"])
        first = eventually(lambda: two_workers(central), what="two workers")
        each_answers(s, central, first)  # both serving, not one still starting
        killed = min(first)

        os.kill(killed, signal.SIGKILL)

        def replaced() -> set[int]:
            answered_by(s, central)  # every request meanwhile is answered
            pids = two_workers(central)
            assert killed not in pids
            return pids

        now = eventually(replaced, 60, "the killed worker replaced", interval=0.2)
        each_answers(s, central, now - first)  # the new one serves too
        assert central.process.poll() is None, "the supervisor outlives its workers"
        assert central.stop(signal.SIGTERM, timeout=30) == 0


def test_workers_outside_1_to_64_stop_serve_with_one_line_and_exit_2(tmp_path):
    done = subprocess.run(
        [str(BIN / "central"), "serve", "--workers", "65"],
        env={
            **os.environ,
            "INVCTL_JWT_SECRET": SECRET,
            "INVCTL_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "central: INVCTL_WORKERS (workers, --workers) must be a whole number from 1 to 64, "
        "got 65 [config.invalid]"
    )
