"""``bench-learning --add-to``: seeds run in another session are read back per task from the
benchmark's MLflow parent run (sqlite store), and a run of other settings is refused."""

import argparse
import sys

import pytest

from eto_assets.config import settings
from eto_assets.config.profile import load_profile
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
learning = pytest.importorskip("learning")


def bench_args(**changes) -> argparse.Namespace:
    values = {"task": "sciworld", "backend": "transformers", "base_model": "/models/smollm2", "add_to": None}
    return argparse.Namespace(**{**values, **changes})


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ETO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri sets it
    assert settings.home() == tmp_path / "home"


def test_seeds_of_an_earlier_session_come_back_per_task(store):
    profile = load_profile("medium")
    first = learning.Tracking(bench_args(), profile)
    rewards = {
        "base": {"seen": {"t1": 0.0, "t2": 0.25}, "unseen": {"t9": 0.0}},
        "sft": {"seen": {"t1": 0.5, "t2": 0.25}, "unseen": {"t9": 1.0}},
        "eto-1": {"seen": {"t1": 1.0, "t2": 0.0}, "unseen": {"t9": 0.75}},
    }
    first.seed_child(3, rewards, {"dpo": 12.0})
    first.sweep_child({"beta": 0.1}, 0.5, 0.4)  # not a seed: never read back as one
    first.end(1.0)
    parent = first.parent.info.run_id

    again = learning.Tracking(bench_args(add_to=parent), profile)
    assert again.parent.info.run_id == parent
    assert again.earlier_seeds() == {3: rewards}
    again.end(2.0)

    refused = r"not the same benchmark \(task: run has 'sciworld', now 'alfworld'"
    with pytest.raises(SystemExit, match=refused):
        learning.Tracking(bench_args(add_to=parent, task="alfworld"), profile)
    other_beta = profile.model_copy(update={"dpo": profile.dpo.model_copy(update={"beta": 0.9})})
    with pytest.raises(SystemExit, match="dpo_beta"):
        learning.Tracking(bench_args(add_to=parent), other_beta)


def test_a_run_whose_seeds_kept_no_per_task_rewards_is_refused(store):
    import mlflow

    profile = load_profile("medium")
    old = learning.Tracking(bench_args(), profile)
    with mlflow.start_run(run_name="seed-0", nested=True):  # as seed children were logged before
        mlflow.set_tag("eto.seed", "0")
        mlflow.log_metric("sft_seen_avg_reward", 0.078)
    old.end(45.6)
    again = learning.Tracking(bench_args(add_to=old.parent.info.run_id), profile)
    with pytest.raises(SystemExit, match="seed 0's run .* has no per-task rewards"):
        again.earlier_seeds()
