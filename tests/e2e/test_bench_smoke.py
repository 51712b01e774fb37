"""The benchmark suite runs end to end in quick mode. A smoke test: it asserts that every
benchmark produced its table, never how fast anything was."""

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

SECTIONS = [
    "## Sync latency: central commit to store replica",
    "## Orders through HTTP",
    "## Replica: apply rate, bootstrap, memory",
    "## CLI start-up",
    "## Fan-out: 20 store agents on one stream",
    "## Tracing overhead",
    "## Relay failover: SIGKILL of the lease holder",
    "## Orders through HAProxy on a Galera cluster",
    "## Fleet view: 1,000 stores heartbeating",
    "## Flat cost: orders on a new database and after 1,000,000 orders",
    "## Orders with allowances on, next to off",
]


def test_quick_benchmarks_produce_every_table(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path / "benchmarks-quick.md")],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "benchmarks-quick.md").read_text()
    for section in SECTIONS:
        assert section in report
        table = report.split(section, 1)[1].split("\n## ", 1)[0]
        assert "| ---" in table, f"{section} has no table"
    assert "nan" not in report.lower()
