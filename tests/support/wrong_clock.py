"""A store agent process whose wall clock is wrong: run under libfaketime (Debian package
`faketime`, installed by `scripts/dev setup`), e.g. `agent_under_faketime("+10m")`. It is
preloaded through `env` (which execs), not the `faketime` wrapper: the wrapper forks and does
not pass SIGTERM on, so stopping the test's process would leave the agent running.

libfaketime 0.9.10 (Debian 12) does not work with Python 3.11 as it comes:
- by default it fakes the monotonic clock too, and Python's timed waits on a lock or an
  Event (sem_clockwait on CLOCK_MONOTONIC, which it does not intercept) then never end
  (wolfcw/libfaketime#390, #469): the agent hangs at its first `stop.wait(...)`;
- with the monotonic clock left true (`--exclude-monotonic`: what a wrong wall clock looks
  like on a real machine), its clock_nanosleep wrapper turns Python 3.11's time.sleep (an
  absolute CLOCK_MONOTONIC deadline) into EINVAL (wolfcw/libfaketime#426).
So the agent runs with the monotonic clock true (FAKETIME_DONT_FAKE_MONOTONIC=1), and its
time.sleep waits on an Event instead, which that wrapper leaves alone. Every wall-clock read
of the process (Python's datetime and time.time, OpenSSL's certificate checks) sees the
wrong time.
"""

from __future__ import annotations

import glob
import sys

import pytest

AGENT_WITH_SLEEP_FIX = (
    "import sys, threading, time\n"
    "time.sleep = lambda seconds: threading.Event().wait(max(seconds, 0))\n"
    "from storeagent.cli import main\n"
    "sys.argv[0] = 'storeagent'\n"
    "sys.exit(main())\n"
)


LIBFAKETIME = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/*lib*/faketime/libfaketime.so.1")


def agent_under_faketime(offset: str) -> list[str]:
    """The command that runs `storeagent` with its wall clock `offset` from the true time
    (libfaketime's FAKETIME format: "+10m", "-10m")."""
    found = sorted(path for pattern in LIBFAKETIME for path in glob.glob(pattern))
    if not found:
        pytest.fail("libfaketime is not installed: `scripts/dev setup` (apt-get install faketime)")
    return [
        "env",
        f"LD_PRELOAD={found[0]}",
        f"FAKETIME={offset}",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
        sys.executable,
        "-c",
        AGENT_WITH_SLEEP_FIX,
    ]
