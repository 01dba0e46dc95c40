"""Every asset through Dagster's ``materialize``, one at a time in graph order, into a real sqlite
Dagster instance and a real sqlite MLflow store: each records its stage run and its metadata."""

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from mlflow.tracking import MlflowClient

from eto_assets.assets.graph import build_assets
from resources import EnvironmentsResource, EtoSettings, InferenceResource, MlflowTracking
from tests.conftest import REPO

NANO = str(REPO / "tests" / "fixtures" / "nano.yaml")
ORDER = [
    ("expert_trajectories", "expert"),
    ("base_model/checkpoint", "base_model"),
    ("sft_checkpoint", "sft"),
    ("base_model/eval_report", "eval"),
    ("iteration_0/eval_report", "eval"),
    ("iteration_1/exploration_rollouts", "explore"),
    ("iteration_1/preference_pairs", "pairs"),
    ("iteration_1/dpo_checkpoint", "dpo"),
    ("iteration_1/eval_report", "eval"),
    ("iteration_report", "report"),
]


def resources(home, uri, profile=NANO):
    return {
        "settings": EtoSettings(home=str(home), profile=profile, base_model="tiny"),
        "mlflow_tracking": MlflowTracking(tracking_uri=uri),
        "inference": InferenceResource(backend="transformers"),
        "envs": EnvironmentsResource(env_processes=0),
    }


def nano_variant(tmp_path, old: str, new: str) -> str:
    """The nano profile with one line changed, as a file."""
    profile = tmp_path / "variant.yaml"
    profile.write_text((REPO / "tests" / "fixtures" / "nano.yaml").read_text().replace(old, new))
    return str(profile)


def materialize_alone(tmp_path, key: str, iterations: int = 1, profile: str = NANO, **kwargs):
    """One asset of a fresh graph with ``iterations`` iterations, in its own home and stores."""
    with DagsterInstance.ephemeral() as instance:
        return materialize(
            build_assets(iterations),
            selection=[AssetKey.from_user_string(key)],
            partition_key="sciworld",
            resources=resources(tmp_path / "home", f"sqlite:///{tmp_path / 'm.db'}", profile),
            instance=instance,
            **kwargs,
        )


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    assets = build_assets(1)
    results, checks, versions = {}, {}, {}
    with DagsterInstance.ephemeral() as instance:
        for key, _ in ORDER:
            result = materialize(
                assets,
                selection=[AssetKey.from_user_string(key)],
                partition_key="sciworld",
                resources=resources(root / "home", uri),
                instance=instance,
            )
            assert result.success, key
            [event] = result.get_asset_materialization_events()
            results[key] = event.materialization.metadata
            tags = event.materialization.tags
            versions[key] = (tags.get("dagster/code_version"), tags.get("dagster/data_version"))
            checks[key] = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return root, uri, results, checks, versions


@pytest.mark.parametrize(("key", "stage"), ORDER)
def test_each_asset_records_its_stage(materialized, key, stage):
    _, uri, results, *_ = materialized
    metadata = results[key]
    if stage == "report":  # it names the best iteration and gives its version the alias
        assert metadata["best_iteration"].value in (0, 1)
        best = MlflowClient(uri).get_model_version_by_alias("eto-sciworld", "champion")
        assert best.tags["eto.iteration"] == str(metadata["best_iteration"].value)
        assert metadata["champion"].value.endswith(f"(v{best.version})")
    run = MlflowClient(uri).get_run(metadata["mlflow_run_id"].value)
    assert run.data.tags["eto.stage"] == stage and run.data.tags["dagster.asset_key"] == key
    assert run.data.params["profile"] == NANO and run.data.params["backend"] == "transformers"
    assert run.info.run_name.startswith("sciworld-base" if key.startswith("base_model") else "sciworld-it")
    assert run.data.metrics[f"{stage}/peak_rss_gb"] > 0.1  # the stage's memory, measured
    assert f"/runs/{run.info.run_id}?workflowType=machine_learning" in metadata["mlflow_run"].value


def test_checkpoints_are_registered_versions(materialized):
    _, uri, results, *_ = materialized
    assert results["sft_checkpoint"]["model_version"].value == "1"
    assert results["sft_checkpoint"]["registered_model"].value == "eto-sciworld v1"
    versions = MlflowClient(uri).search_model_versions("name='eto-sciworld'")
    assert ("sft", "0") in {(v.tags["eto.stage"], v.tags["eto.iteration"]) for v in versions}
    # the stage's own files name the checkpoint only: the version lives in MLflow and Dagster
    policy = (
        root_of(materialized) / "home" / "artifacts" / "sciworld" / "iteration_0" / "policy.json"
    ).read_text()
    assert "model_version" not in policy and "mlflow" not in policy
    # the evaluation of iteration 1 names the version it evaluated, and that version carries its numbers
    evaluated = results["iteration_1/eval_report"]["evaluated_model"].value
    v1 = MlflowClient(uri).get_model_version("eto-sciworld", evaluated.rpartition(" v")[2])
    assert v1.tags["eto.iteration"] == "1" and "eval/seen_avg_reward" in v1.tags


def root_of(materialized):
    return materialized[0]


def test_every_materialization_reports_code_and_data_versions(materialized):
    _, _, _, _, versions = materialized
    for key, (code, data) in versions.items():
        assert code == "1" and data and len(data) == 16, key


def test_more_iterations_than_the_graph_stop_at_once(tmp_path):
    profile = nano_variant(tmp_path, "iterations: 1", "iterations: 3")
    result = materialize_alone(tmp_path, "expert_trajectories", profile=profile, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "ETO_ITERATIONS=3" in failure.event_specific_data.error.message
    assert not (tmp_path / "home" / "artifacts").exists()  # failed before any work


def test_fewer_iterations_than_the_graph_are_explicit_no_ops(tmp_path):
    result = materialize_alone(tmp_path, "iteration_2/preference_pairs", iterations=2)
    [event] = result.get_asset_materialization_events()
    assert "runs 1 iteration" in event.materialization.metadata["skipped"].value


EXPECTED_CHECKS = {
    "expert_trajectories": {"expert_rewards", "no_empty_trajectories"},
    "sft_checkpoint": {"checkpoint_generates"},
    "base_model/eval_report": {"covers_held_out_splits", "mostly_valid_actions", "no_regression"},
    "iteration_0/eval_report": {"covers_held_out_splits", "mostly_valid_actions", "no_regression"},
    "iteration_1/exploration_rollouts": {"rewards_in_range", "no_empty_trajectories", "mostly_valid_actions"},
    "iteration_1/preference_pairs": {"chosen_above_rejected", "pairs_present"},
    "iteration_1/dpo_checkpoint": {"checkpoint_generates"},
    "iteration_1/eval_report": {"covers_held_out_splits", "mostly_valid_actions", "no_regression"},
}


@pytest.mark.parametrize("key", sorted(EXPECTED_CHECKS))
def test_each_stage_reports_its_checks(materialized, key):
    *_, checks, _ = materialized
    assert set(checks[key]) == EXPECTED_CHECKS[key]
    for name, evaluation in checks[key].items():
        # WARN checks: may flag, never fail the run
        if name in ("pairs_present", "no_regression", "mostly_valid_actions"):
            assert evaluation.severity.value == "WARN"
        else:
            assert evaluation.passed, (key, name, evaluation.description)


def test_the_base_model_evaluation_is_a_no_op_unless_the_profile_asks(tmp_path):
    profile = nano_variant(tmp_path, "evaluate_base_model: true", "")
    result = materialize_alone(tmp_path, "base_model/eval_report", profile=profile)
    [event] = result.get_asset_materialization_events()
    assert "evaluate_base_model: false" in event.materialization.metadata["skipped"].value
    assert not (tmp_path / "home" / "artifacts" / "sciworld" / "base_model_eval").exists()


def test_metadata_is_rounded_and_tables_are_markdown(materialized):
    _, _, results, *_ = materialized
    report = results["iteration_1/eval_report"]
    assert report["per_type"].value.startswith("| split | task type |")
    for entry in report.values():
        value = getattr(entry, "value", entry)
        if isinstance(value, float):
            assert value == round(value, 4)
