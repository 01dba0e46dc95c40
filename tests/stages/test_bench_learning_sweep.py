"""``bench-learning --sweep`` as a user runs it (the nano profile, the tiny model, real ScienceWorld,
a sqlite MLflow store): the sweep shares the first seed's SFT, exploration and pairs with hard-linked
forks, its winner becomes that seed's policy, a second run on the same ``--workdir`` keeps every
stage, and a folder made with other settings is refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import NANO, REPO, shared_data_dir

SWEEP = ("--sweep", "--sweep-lr", "1e-4,1e-3", "--sweep-beta", "0.1", "--sweep-epochs", "1")


def bench(root: Path, *args: str, profile: Path = NANO) -> subprocess.CompletedProcess:
    env = {**os.environ, "ETO_HOME": str(root / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)  # another test in this process may have set it
    if shared_data_dir() is not None:
        env["ETO_DATA_DIR"] = str(shared_data_dir())
    command = [sys.executable, "benchmarks/learning.py", "--profile", str(profile), "--task", "sciworld"]
    command += ["--base-model", "tiny", "--backend", "transformers", "--dtype", "float32"]
    command += ["--workdir", str(root / "work"), *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return done


def stage_lines(stdout: str, seed: int) -> list[str]:
    """The stage lines printed for ``seed`` (between ``seed N:`` and ``seed N: <wall> min``)."""
    lines = stdout.splitlines()
    start = lines.index(f"seed {seed}:")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(f"seed {seed}: "))
    staged = [line for line in lines[start + 1 : end] if line.startswith("  ") and line[2] != " "]
    return [
        line[2:16].strip() + (" kept" if line.endswith("kept from an earlier run") else "") for line in staged
    ]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-sweep")
    first = bench(root, "--seeds", "0,1", *SWEEP)
    assert first.returncode == 0, first.stderr[-3000:]
    return root, first.stdout


def test_the_sweep_shares_the_first_seed_and_its_winner_is_that_seed(swept, monkeypatch):
    import mlflow

    root, out = swept
    work = root / "work"
    seed0 = work / "seed-0" / "artifacts" / "sciworld"
    named = "seed-0-learning_rate=0.001_beta=0.1_num_train_epochs=1"  # the other setting's folder
    fork = work / "sweep" / named / "artifacts" / "sciworld"
    # the other setting trained from the same exploration, not a copy of it, and into its own folder
    rollouts = Path("iteration_1") / "exploration_rollouts.jsonl"
    assert (fork / rollouts).stat().st_ino == (seed0 / rollouts).stat().st_ino
    assert str(fork.parents[1]) in (fork / "iteration_1" / "policy.json").read_text()
    assert str(seed0.parents[1]) in (seed0 / "iteration_1" / "policy.json").read_text()

    winner = next(line for line in out.splitlines() if line.startswith("sweep winner (seen only): "))
    # seed 0 trained nothing again: only the winner's unseen evaluation was left
    assert stage_lines(out, 0) == ["base model", "sft kept", "eval sft kept", "explore kept", "pairs kept",
                                   "dpo kept", "eval eto-1"]  # fmt: skip
    assert stage_lines(out, 1) == ["base model", "sft", "eval sft", "explore", "pairs", "dpo", "eval eto-1"]

    uri = f"sqlite:///{root / 'home' / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # set_tracking_uri sets it; gone after the test
    mlflow.set_tracking_uri(uri)
    parent = mlflow.search_runs(
        experiment_names=["eto-bench-learning"], filter_string="tags.eto.benchmark = 'learning'",
        output_format="list",
    )[0]  # fmt: skip
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        output_format="list",
    )
    sweeps = {c.data.params["dpo_learning_rate"]: c for c in children if "eto.sweep" in c.data.tags}
    seeds = {c.data.tags["eto.seed"]: c for c in children if "eto.seed" in c.data.tags}
    assert set(sweeps) == {"0.0001", "0.001"} and set(seeds) == {"0", "1"}
    chosen = sweeps["0.001" if "'learning_rate': 0.001," in winner else "0.0001"]
    seen = {lr: c.data.metrics["eto1_seen_avg_reward"] for lr, c in sweeps.items()}
    # the profile's own setting (1e-4) stays unless the other beats it (a tie keeps it)
    assert chosen is sweeps["0.001"] if seen["0.001"] > seen["0.0001"] else chosen is sweeps["0.0001"]
    # seed 0's ETO policy is the winner's: the same seen reward the sweep scored it by
    assert seeds["0"].data.metrics["eto1_seen_avg_reward"] == chosen.data.metrics["eto1_seen_avg_reward"]
    assert "dpo_chosen" in parent.data.params
    assert "sweep_margin_seen_ci95_low" in parent.data.metrics  # the winner's margin, with its interval


def test_a_second_run_on_the_same_folder_keeps_every_stage(swept):
    root, _ = swept
    again = bench(root, "--seeds", "0,1", *SWEEP)
    assert again.returncode == 0, again.stderr[-3000:]
    for seed in (0, 1):
        ran = [line for line in stage_lines(again.stdout, seed) if not line.endswith("kept")]
        assert ran == ["base model"], ran  # the base model's record is rewritten, nothing is trained


def test_a_folder_made_with_other_settings_is_refused(swept, tmp_path):
    root, _ = swept
    other = tmp_path / "nano-other-sft.yaml"
    other.write_text(NANO.read_text().replace("learning_rate: 3.0e-3", "learning_rate: 2.0e-3"))
    refused = bench(root, "--seeds", "1,", profile=other)
    assert refused.returncode != 0
    assert f"{root / 'work' / 'seed-1'}: made with other settings" in refused.stderr
