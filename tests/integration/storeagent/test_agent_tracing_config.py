"""`storeagent run` asked for traces it cannot send: OTEL_EXPORTER_OTLP_ENDPOINT set while the
OTLP exporter is not installed is a configuration error (exit 2, one JSON line), before the
replica is touched. (The exporter is taken away in the child process only, as an install
without the `otlp` extra would lack it.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

WITHOUT_EXPORTER = (
    "import sys; sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None; "
    "from storeagent.cli import main; main()"
)


def test_traces_asked_for_without_the_exporter_exit_2_with_one_json_line(tmp_path: Path):
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_EXPORTER,
            "run",
            "--store-id",
            "s1",
            "--db",
            str(tmp_path / "a.db"),
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=20,
        env={
            **os.environ,
            "STOREAGENT_API_KEY": "sk-test-key",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        },
    )

    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    error = json.loads(line)
    assert (error["event"], error["code"]) == ("agent.config_invalid", "config.tracing_unavailable")
    assert "otlp" in error["message"]
    assert not (tmp_path / "a.db").exists()
