import os
import subprocess
import sys

import pytest

pytest.importorskip("numpy")
pytest.importorskip("PIL")

BENCHMARK = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "model_pipe_bench.py"
)

# Hang guard for the subprocess, not a speed requirement.
DEADLINE_S = 300


def test_benchmark_prints_table():
    completed = subprocess.run(
        [
            sys.executable,
            BENCHMARK,
            "--n", "60",
            "--delay", "0.005",
            "--model-fixed", "0.005",
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )

    assert completed.returncode == 0, completed.stderr
    assert "| Experiment | Time (s) |" in completed.stdout
    for row in ("One-by-one", "Pipe (batch 64, workers 4)", "Pipe (batch 128, workers 32)"):
        assert "| {} |".format(row) in completed.stdout
    assert "differs from one-by-one" not in completed.stdout
