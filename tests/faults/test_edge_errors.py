"""Failures name their root cause in one line (asset failure metadata and description), settings that
would fail late are refused before any work, two runs of one stage never overlap, and a stage whose
actions were mostly invalid is flagged. Dagster's ``materialize`` on the nano profile, sqlite stores."""

import subprocess
import sys
import time

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from eto_assets.assets.errors import root_cause
from eto_assets.assets.graph import build_assets
from eto_assets.assets.locks import StageBusy, stage_lock
from resources import EnvironmentsResource, EtoSettings, InferenceResource, MlflowTracking
from tests.conftest import REPO

NANO = (REPO / "tests" / "fixtures" / "nano.yaml").read_text()


def resources(home, uri, profile, base_model="tiny"):
    return {
        "settings": EtoSettings(home=str(home), profile=str(profile), base_model=base_model),
        "mlflow_tracking": MlflowTracking(tracking_uri=uri),
        "inference": InferenceResource(backend="transformers"),
        "envs": EnvironmentsResource(env_processes=0),
    }


def nano_variant(tmp_path, old: str, new: str, name="variant.yaml"):
    assert old in NANO
    path = tmp_path / name
    path.write_text(NANO.replace(old, new))
    return path


def fail_expert(tmp_path, profile, partition="sciworld", uri=None, base_model="tiny"):
    """Materialize the expert asset, expect it to fail; return (description, metadata, seconds)."""
    uri = uri or f"sqlite:///{tmp_path / 'mlflow.db'}"
    started = time.perf_counter()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            build_assets(1),
            selection=[AssetKey("expert_trajectories")],
            partition_key=partition,
            resources=resources(tmp_path / "home", uri, profile, base_model),
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    data = failure.event_specific_data.user_failure_data
    assert data is not None, failure.event_specific_data.error.message
    metadata = {k: v.value for k, v in data.metadata.items()}
    assert "\n" not in data.description and metadata["cause"] == data.description
    assert metadata["stage"] == "expert" and metadata["error_type"]
    return data.description, metadata, time.perf_counter() - started


# ------------------------------------------------------------------ root cause in one line


def test_unknown_task_type_in_a_profile_is_named(tmp_path):
    profile = nano_variant(tmp_path, "task_types: [find-animal]", "task_types: [find-unicorn]")
    description, _, _ = fail_expert(tmp_path, profile)
    assert "find-unicorn" in description


def test_bad_webshop_catalog_name_is_named(tmp_path):
    profile = nano_variant(
        tmp_path,
        "tiny_model:",
        "  webshop:\n    catalog: no-such-catalog\n    train_per_type: 2\ntiny_model:",
    )
    description, _, _ = fail_expert(tmp_path, profile, partition="webshop")
    assert "no-such-catalog" in description


def test_truncated_safetensors_names_the_file():
    import tempfile
    from pathlib import Path

    import torch
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file({"w": torch.zeros(64, 64)}, str(path))
        path.write_bytes(path.read_bytes()[:100])
        try:
            try:
                load_file(str(path))
            except Exception as exc:
                raise RuntimeError("Error(s) in loading state_dict") from exc
        except RuntimeError as outer:
            error_type, line = root_cause(outer)
    assert "truncated or corrupt" in line and str(path) in line and "\n" not in line
    assert error_type != "RuntimeError"


def test_dead_jvm_is_named():
    from py4j.protocol import Py4JNetworkError

    try:
        try:
            raise Py4JNetworkError(
                "An error occurred while trying to connect to the Java server (127.0.0.1:25333)"
            )
        except Py4JNetworkError as exc:
            raise RuntimeError("episode failed") from exc
    except RuntimeError as outer:
        error_type, line = root_cause(outer)
    assert error_type == "Py4JNetworkError" and "ScienceWorld Java engine (JVM)" in line


def test_bad_lr_scheduler_type_is_named():
    from transformers import SchedulerType

    try:
        try:
            SchedulerType("cosine-ish")
        except ValueError as exc:
            raise RuntimeError("training failed") from exc
    except RuntimeError as outer:
        _, line = root_cause(outer)
    assert "cosine-ish" in line and "lr_scheduler_type" in line


# ------------------------------------------------------------------ preflight in the first asset


def test_unreachable_mlflow_server_fails_in_seconds(tmp_path):
    profile = nano_variant(tmp_path, "iterations: 1", "iterations: 1")
    description, _, seconds = fail_expert(tmp_path, profile, uri="http://127.0.0.1:9")
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in description
    assert seconds < 30
    assert not (tmp_path / "home" / "artifacts").exists()  # no work started


def test_missing_base_model_folder_fails_before_expert_data(tmp_path):
    profile = nano_variant(tmp_path, "iterations: 1", "iterations: 1")
    description, _, _ = fail_expert(tmp_path, profile, base_model=str(tmp_path / "no-model"))
    assert "base model folder" in description and "no-model" in description
    assert not (tmp_path / "home" / "artifacts").exists()


# ------------------------------------------------------------------ one run per task and stage


def test_a_second_holder_of_a_stage_lock_is_refused_naming_the_first(tmp_path):
    with stage_lock(tmp_path, "sciworld", "sft", 0, "run-aaaa"):
        with (
            pytest.raises(StageBusy, match="Dagster run run-aaaa"),
            stage_lock(tmp_path, "sciworld", "sft", 0, "b"),
        ):
            pass
        with stage_lock(tmp_path, "sciworld", "eval", 0, "run-bbbb"):  # another stage is free
            pass
    with stage_lock(tmp_path, "sciworld", "sft", 0, "run-bbbb"):  # released with its holder
        pass


def test_a_stage_held_by_another_process_refuses_at_once(tmp_path):
    home = tmp_path / "home"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from eto_assets.assets.locks import stage_lock\n"
            f"with stage_lock(Path({str(home)!r}), 'sciworld', 'expert', 0, 'holder-run-1234'):\n"
            "    print('held', flush=True); time.sleep(120)",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        profile = nano_variant(tmp_path, "iterations: 1", "iterations: 1")
        description, metadata, seconds = fail_expert(tmp_path, profile)
        assert "holder-run-1234" in description and "already being run" in description
        assert metadata["error_type"] == "StageBusy" and seconds < 60
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------ most actions invalid


def test_valid_expert_turns_pass_the_invalid_action_check(tmp_path, expert_sample):
    from eto_assets.stages.checks import check_valid_actions

    outcome = check_valid_actions(expert_sample, "expert")
    assert outcome.passed and outcome.metadata["invalid_turns"] == 0
