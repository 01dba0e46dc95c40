"""SIGKILL each stage of a nano run at a random point, rerun it, and compare the artifacts with an
uninterrupted run's: the same counts and task ids, no duplicates, no leftover temporary files."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from eto_assets.data.schemas import read_pairs, read_trajectories
from eto_assets.stages.layout import ArtifactLayout
from eto_assets.stages.policy import PolicyRecord
from tests.conftest import REPO, shared_data_dir
from tests.faults.driver import STAGES, run_stage


def _artifacts(home):
    layout = ArtifactLayout(home, "sciworld")
    ids = {
        "expert": [t.task_id for t in read_trajectories(layout.expert_jsonl)],
        "explore": [t.task_id for t in read_trajectories(layout.rollouts_jsonl(1))],
        "pairs": [p.task_id for p in read_pairs(layout.pairs_jsonl(1))],
    }
    for k in (0, 1):
        for split in ("seen", "unseen"):
            ids[f"eval{k}_{split}"] = [t.task_id for t in read_trajectories(layout.eval_jsonl(k, split))]
        report = json.loads(layout.eval_report(k).read_text())
        ids[f"report{k}"] = {s: m["episodes"] for s, m in report["splits"].items()}
    ids["checkpoints"] = [
        (Path(PolicyRecord.read(layout, k).checkpoint) / "model.safetensors").is_file() for k in (0, 1)
    ]
    return ids


def test_a_run_killed_in_every_stage_ends_like_an_uninterrupted_one(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if shared_data_dir():
        env["ETO_DATA_DIR"] = str(shared_data_dir())
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for stage in STAGES:
        run_stage(clean, stage)
    rng = random.Random(13)
    for stage in STAGES:
        cmd = [sys.executable, "-m", "tests.faults.driver", str(killed), stage]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.5, 6.0))  # the driver imports for about 3 s, then the stage runs
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    expected, got = _artifacts(clean), _artifacts(killed)
    assert got == expected
    for key, ids in got.items():
        if isinstance(ids, list) and ids and isinstance(ids[0], str):
            assert len(ids) == len(set(ids)), f"{key}: duplicates {ids}"
    leftovers = [p for p in killed.rglob("*") if p.name.endswith((".tmp", ".work", ".previous"))]
    assert not leftovers, leftovers
