"""The whole graph for the micro profile, materialized into a real sqlite Dagster instance and a
real sqlite MLflow store, then checked from both sides."""

import json
import shutil

import mlflow
import pytest
from dagster import AssetKey, DagsterInstance
from mlflow.tracking import MlflowClient

from eto_assets.definitions import build_definitions
from tests.conftest import REPO

pytestmark = pytest.mark.slow

STAGES = {"expert", "sft", "explore", "pairs", "dpo", "eval"}


def run_config(home, uri, **settings):
    return {
        "resources": {
            "settings": {"config": {"home": str(home), "profile": "micro", **settings}},
            "mlflow_tracking": {"config": {"tracking_uri": uri}},
        }
    }


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    dagster_home = root / "dagster"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(dagster_home))
    defs = build_definitions(iterations=1)
    instance = DagsterInstance.get()
    result = defs.resolve_job_def("eto_job").execute_in_process(
        run_config=run_config(root / "home", uri),
        instance=instance,
        partition_key="sciworld",
        raise_on_error=False,
    )
    yield result, root, uri, instance, defs
    instance.dispose()
    mp.undo()


def test_run_succeeds_and_writes_artifacts(pipeline_run):
    result, root, *_ = pipeline_run
    assert result.success
    art = root / "home" / "artifacts" / "sciworld"
    experts = [json.loads(line) for line in (art / "expert" / "expert_trajectories.jsonl").open()]
    assert len(experts) == 6 and all(e["reward"] == 1.0 for e in experts)
    assert (art / "iteration_0" / "sft_checkpoint" / "model.safetensors").is_file()
    assert (art / "iteration_1" / "exploration_rollouts.jsonl").is_file()
    assert (art / "iteration_1" / "preference_pairs.eto.json").is_file()
    for k in (0, 1):
        report = json.loads((art / f"iteration_{k}" / "eval_report.json").read_text())
        assert set(report["splits"]) == {"seen", "unseen"}
        assert report["splits"]["seen"]["episodes"] == 4
    assert "| 0" in (art / "summary.md").read_text()


def test_dagster_instance_records_every_asset(pipeline_run):
    result, _, _, instance, defs = pipeline_run
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    for key in keys:
        event = instance.get_latest_materialization_event(key)
        assert event is not None, key
        assert event.run_id == result.run_id
    meta = instance.get_latest_materialization_event(
        AssetKey("expert_trajectories")
    ).asset_materialization.metadata
    assert meta["expert_count"].value == 6 and "mlflow_run" in meta


def test_mlflow_runs_tags_metrics_inputs_and_models(pipeline_run):
    result, _, uri, *_ = pipeline_run
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("eto-sciworld")
    runs = client.search_runs([exp.experiment_id])
    by_stage = {}
    for run in runs:
        tags = run.data.tags
        assert tags["eto.task"] == "sciworld"
        assert tags["dagster.run_id"] == result.run_id
        assert tags["dagster.asset_key"]
        by_stage.setdefault(tags["eto.stage"], []).append(run)
    assert set(by_stage) == STAGES
    assert len(by_stage["eval"]) == 2

    expert = by_stage["expert"][0]
    assert expert.data.metrics["expert_count"] == 6 and expert.data.metrics["expert_dropped"] == 0
    assert expert.data.metrics["expert_avg_reward"] == 1.0
    assert expert.data.params["profile.sft.learning_rate"] == "0.003"

    for run in by_stage["eval"]:
        k = int(run.data.tags["eto.iteration"])
        history = client.get_metric_history(run.info.run_id, "eval_seen_avg_reward")
        assert [m.step for m in history] == [k]
        for name in (
            "eval_seen_success_rate",
            "eval_unseen_avg_reward",
            "eval_unseen_success_rate",
            "eval_avg_steps",
        ):
            assert name in run.data.metrics

    assert "pairs_count" in by_stage["pairs"][0].data.metrics
    assert "pairs_dropped_ties" in by_stage["pairs"][0].data.metrics
    assert client.get_metric_history(by_stage["sft"][0].info.run_id, "sft_loss")

    def inputs(run):
        return {d.dataset.name for d in run.inputs.dataset_inputs}

    assert inputs(by_stage["sft"][0]) == {"sciworld-expert"}
    assert inputs(by_stage["pairs"][0]) == {"sciworld-expert", "sciworld-explore-it1"}

    versions = client.search_model_versions("name='eto-sciworld'")
    stages = {(v.tags["eto.stage"], v.tags["eto.iteration"]) for v in versions}
    assert ("sft", "0") in stages
    dpo_runs = [r for r in by_stage["dpo"] if r.data.tags.get("eto.dpo_skipped") != "no pairs"]
    if dpo_runs:
        assert ("dpo", "1") in stages
        assert inputs(dpo_runs[0]) == {"sciworld-pairs-it1"}
    best = client.get_model_version_by_alias("eto-sciworld", "best")
    assert best.tags["eto.stage"] in {"sft", "dpo"}


def test_bad_base_model_fails_with_a_clear_message(pipeline_run, tmp_path):
    _, root, uri, instance, defs = pipeline_run
    job = defs.resolve_job_def("eto_job")
    bad = job.get_subset(asset_selection={AssetKey("sft_checkpoint")})
    result = bad.execute_in_process(
        run_config=run_config(root / "home", uri, base_model=str(tmp_path / "no-model")),
        instance=instance,
        partition_key="sciworld",
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.event_specific_data.error.message
    assert "base_model setting" in message and "no-model" in message
    # nothing already produced is lost
    assert (
        root / "home" / "artifacts" / "sciworld" / "iteration_0" / "sft_checkpoint" / "config.json"
    ).is_file()
