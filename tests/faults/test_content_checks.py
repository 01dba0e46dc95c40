"""Up to date means the content matches what was recorded, not that files exist: a deleted report
folder is recreated by the next run, and a torn expert file or weights overwritten in place make
their asset (and what follows it) run again. The real CLI on the nano profile, sqlite stores."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from jobs.run import open_instance, prepare_instance_home, select_assets
from tests.conftest import REPO
from tests.conftest import run_cli as run_nano

NANO = REPO / "tests" / "fixtures" / "nano.yaml"


def run_in(home: Path) -> tuple[int, str]:
    env = {
        **os.environ,
        "ETO_HOME": str(home),
        "ETO_ITERATIONS": "1",
        "DAGSTER_HOME": "",
        "MLFLOW_TRACKING_URI": "",
    }
    out = run_nano(env)
    return out.returncode, out.stdout + out.stderr


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("content") / "home"
    code, out = run_in(home)
    assert code == 0, out[-3000:]
    return home


def selection(home: Path, monkeypatch) -> tuple[list[str], dict[str, str]]:
    monkeypatch.setenv("DAGSTER_HOME", "")
    args = argparse.Namespace(
        task="sciworld", profile=str(NANO), base_model="tiny", backend="transformers", force=False
    )
    with open_instance(prepare_instance_home(home)) as instance:
        return select_assets(args, home, instance, 1)


def test_a_deleted_report_folder_is_recreated_by_the_next_run(home):
    report = home / "artifacts" / "sciworld" / "report"
    summary = (report / "summary.md").read_text()
    for path in sorted(report.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    report.rmdir()
    code, out = run_in(home)
    assert code == 0, out[-3000:]
    assert "run  iteration_report: its files changed or are missing since it was materialized" in out
    assert "skip sft_checkpoint: up to date" in out  # only the report ran
    assert (report / "summary.md").read_text().split("\n")[:3] == summary.split("\n")[:3]


def test_a_torn_expert_file_is_not_up_to_date(home, monkeypatch):
    experts = home / "artifacts" / "sciworld" / "expert" / "expert_trajectories.jsonl"
    whole = experts.read_bytes()
    experts.write_bytes(whole[: len(whole) // 2])  # a copy cut short
    try:
        selected, reasons = selection(home, monkeypatch)
    finally:
        experts.write_bytes(whole)
    assert selected[0] == "expert_trajectories", reasons
    assert reasons["expert_trajectories"] == "its files changed or are missing since it was materialized"
    assert "sft_checkpoint" in selected and "iteration_report" in selected  # and what follows it
    assert selection(home, monkeypatch)[0] == []  # restored: up to date again


def test_weights_overwritten_in_place_are_not_up_to_date(home, monkeypatch):
    policy = json.loads((home / "artifacts" / "sciworld" / "iteration_0" / "policy.json").read_text())
    weights = Path(policy["checkpoint"]) / "model.safetensors"
    whole = weights.read_bytes()
    corrupt = bytearray(whole)
    corrupt[-64:] = bytes(64)  # same size, other bytes: a bad copy or a disk error
    weights.write_bytes(bytes(corrupt))
    try:
        selected, reasons = selection(home, monkeypatch)
    finally:
        weights.write_bytes(whole)
    assert selected[0] == "sft_checkpoint", reasons
    assert reasons["sft_checkpoint"] == "its files changed or are missing since it was materialized"
    assert "iteration_1/dpo_checkpoint" in selected and "expert_trajectories" not in selected
