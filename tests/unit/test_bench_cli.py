"""`python -m bench`'s command line: parsed before anything runs; --help runs nothing and
writes nothing; results go to a file only with --out. No benchmark runs here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS, Run, parse
from bench.allowances import HEALTHZ, KINDS, OFF, ON, RULE, Drawn, Reads, Round, plan, table
from bench.common import Sample, module_args
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit


def test_no_names_runs_every_benchmark_in_order_and_prints_the_results() -> None:
    assert parse([]) == Run(list(BENCHMARKS), quick=False, plaintext=False, out=None)


def test_names_and_options_are_parsed_in_any_order() -> None:
    run = parse(["replica", "--quick", "cli", "--out", "x.md", "--plaintext", "replica"])

    assert run == Run(["replica", "cli"], quick=True, plaintext=True, out=Path("x.md"))


@pytest.mark.parametrize("argv", [["nope"], ["--nope"], ["--out"], ["cli", "fanouts"]])
def test_a_bad_command_line_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv)

    assert exited.value.code == 2
    assert "usage: python -m bench" in capsys.readouterr().err


def test_an_unknown_name_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["nope"])

    assert "unknown benchmark(s): nope (choose from sync_latency, orders" in capsys.readouterr().err


def test_help_prints_usage_and_runs_no_benchmark() -> None:
    code = (
        "import sys\n"
        "from bench.__main__ import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exited:\n"
        "    print('exit', exited.code)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[-1] in "
        "('sync_latency', 'orders', 'replica', 'cli', 'fanout') and m.startswith('bench')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )

    lines = done.stdout.splitlines()
    assert lines[0].startswith("usage: python -m bench")
    assert lines[-2:] == ["exit 0", "[]"]  # exited 0, and no benchmark module was imported
    assert all(name in done.stdout for name in BENCHMARKS)


def test_a_benchmark_module_has_the_same_options_and_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = module_args("bench.cli", "CLI speed.", ["--quick", "--plaintext"])

    assert (args.quick, args.plaintext) == (True, True)
    with pytest.raises(SystemExit) as exited:
        module_args("bench.cli", "CLI speed.", ["--help"])
    assert exited.value.code == 0
    assert "CLI speed." in capsys.readouterr().out


def test_the_allowances_benchmark_interleaves_its_rounds_and_puts_on_next_to_off() -> None:
    def measured(kind: str, done: int, drew: int = 0) -> Round:
        sample = Sample(latencies=[0.01] * done, elapsed=1.0)
        reads = Reads(done=10, elapsed=1.0) if kind == RULE else None
        return Round(kind, sample, Drawn(done, drew, done, drew), reads, top_ups=3)

    rounds = [measured(OFF, 100), measured(ON, 50, 50), measured(RULE, 25, 25)]
    report = table([("sqlite", [*rounds, measured(HEALTHZ, 500)])])

    assert parse(["allowances"]).names == ["allowances"]
    assert plan(2) == [*KINDS, *reversed(KINDS)]
    on_row = "| sqlite | on | 1 | 50 | 50-50 | 10.0 | 10.0 | 0 | 100.0% | 100.0% | 0.50 | 0.10 |"
    assert on_row in report
    assert "**sqlite: on ÷ off = 0.50**" in report
    assert "**sqlite: rule ÷ off = 0.25**" in report
    assert "3 top-up grants made by the stores' reads before them" in report
    assert "nan" not in report.lower()
