"""`invctl import` of a 50 MB file of bad rows, as a real process: memory stays bounded,
the error count is exact and the listed errors are capped. Needs no services (--dry-run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from invctl.importfile import MAX_KEPT_ERRORS, MAX_LINE_CHARS

FILE_BYTES = 50 * 1024 * 1024
PEAK_RSS_LIMIT_MB = 100  # the interpreter with typer and rich is ~30 MB; the old code took >1 GB
HEADER = b"kind,name,sku,price,category,description,active,quantity\n"
PADDING = b"p" * 150
# Each row has exactly one problem; the code it must get.
BAD_ROWS = (
    (b"stock,,SKU-1,,,,," + b"7" * 5000, "quantity.invalid"),
    (b"product,Milk,MILK-1," + b"9" * 29 + b",Dairy," + PADDING + b",true,1", "price.invalid"),
    (b"stock,,SKU-2," + PADDING + b",,,,1000000001", "quantity.invalid"),
    (b"category,Milk\x1b]0;owned\x07\x1b[2J,," + PADDING + b",,,,", "name.invalid"),
    (b"category,Cr\xe8me,," + PADDING + b",,,,", "row.encoding"),
    (b"product,Milk,MILK-3,1.50,Dairy\xe2\x80\xae,,,", "category.invalid"),
)
ENDLESS_LINE = b"category," + b"x" * (4 * MAX_LINE_CHARS)


def write_bad_file(path: Path) -> dict[str, int]:
    """Write ~50 MB of bad rows (and one endless line) a row at a time; count the codes."""
    counts: dict[str, int] = {"row.too_long": 1}
    with path.open("wb") as out:
        size = out.write(HEADER) + out.write(ENDLESS_LINE + b"\n")
        index = 0
        while size < FILE_BYTES:
            row, code = BAD_ROWS[index % len(BAD_ROWS)]
            size += out.write(row + b"\n")
            counts[code] = counts.get(code, 0) + 1
            index += 1
    return counts


# Runs `python -m invctl ARGS` and, as it exits, writes its peak RSS. VmHWM belongs to the
# process's own memory since exec; ru_maxrss would also count the test runner's memory,
# which the child shares (vfork) until it execs.
MEASURED_INVCTL = """
import atexit, runpy, sys

def peak_rss(path: str) -> None:
    with open("/proc/self/status") as status, open(path, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")))

atexit.register(peak_rss, sys.argv[1])
sys.argv = ["invctl", *sys.argv[2:]]
runpy.run_module("invctl", run_name="__main__", alter_sys=True)
"""


def run_measured(args: list[str], tmp_path: Path) -> tuple[int, bytes, float]:
    """Run invctl with `args`: its exit code, its stdout and its peak RSS in MB."""
    peak = tmp_path / "peak.txt"
    env = {**os.environ, "INVCTL_CONFIG_DIR": str(tmp_path / "config")}
    command = [sys.executable, "-c", MEASURED_INVCTL, str(peak), *args]
    result = subprocess.run(command, capture_output=True, env=env, check=False)
    kilobytes = int(peak.read_text().split()[1])  # e.g. "VmHWM:   34540 kB"
    return result.returncode, result.stdout, kilobytes / 1024


def test_fifty_megabytes_of_bad_rows_take_bounded_memory(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    counts = write_bad_file(bad)

    exit_code, stdout, peak_mb = run_measured(["--json", "import", "--dry-run", str(bad)], tmp_path)
    report = json.loads(stdout)

    assert bad.stat().st_size >= FILE_BYTES
    assert exit_code == 1
    assert peak_mb < PEAK_RSS_LIMIT_MB
    total = sum(counts.values())
    assert (report["error_count"], report["bad_rows"], report["rows"]) == (total, total, total)
    assert len(report["errors"]) == MAX_KEPT_ERRORS
    assert report["errors_omitted"] == total - MAX_KEPT_ERRORS
    listed = [(error["line"], error["code"]) for error in report["errors"][:7]]
    assert listed == [
        (2, "row.too_long"),
        *((line, code) for line, (_row, code) in enumerate(BAD_ROWS, start=3)),
    ]
