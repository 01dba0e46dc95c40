"""Registered model versions: by reference to the checkpoint folder (default) or as a copy, against a
real sqlite MLflow store and a real tiny model; both load with ``models:/eto-<task>/<v>`` and predict."""

import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from eto_assets.agent.backends import GenerationConfig, TransformersBackend
from eto_assets.agent.prompt import build_conversation
from eto_assets.assets import tracking
from eto_assets.assets.policy_model import CheckpointReferenceError
from eto_assets.config.settings import SettingError
from resources.mlflow_tracking import MlflowTracking

TASK = "sciworld"


def artifact_bytes(version: str) -> int:
    """Bytes the version's logged model occupies in the (local) artifact store."""
    client = MlflowClient()
    source = client.get_model_version(tracking.model_name(TASK), version).source  # models:/<model id>
    location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    root = Path(location.removeprefix("file://"))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def register(uri: str, root: Path, checkpoint: Path, copy: bool) -> str:
    with tracking.stage_run(uri, TASK, "sft", 0, artifact_root=root / "artifacts"):
        return tracking.register_checkpoint(TASK, checkpoint, iteration=0, stage="sft", copy_checkpoint=copy)


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("mlflow")
    checkpoint = root / "checkpoint"
    shutil.copytree(tiny_model_dir[0], checkpoint)
    return f"sqlite:///{root / 'mlflow.db'}", root, checkpoint


def conversation(tiny_model_dir, expert_sample):
    _, book = tiny_model_dir
    sample = expert_sample[0]
    return build_conversation(book, sample.task_type, sample.messages[:1])


def test_reference_and_copy_both_load_and_predict_and_reference_is_tiny(
    store, tiny_model_dir, expert_sample, capsys
):
    uri, root, checkpoint = store
    ref_version = register(uri, root, checkpoint, copy=False)
    copy_version = register(uri, root, checkpoint, copy=True)
    ref_bytes, copy_bytes = artifact_bytes(ref_version), artifact_bytes(copy_version)
    checkpoint_bytes = sum(p.stat().st_size for p in checkpoint.rglob("*") if p.is_file())
    with capsys.disabled():
        print(
            f"\nartifact bytes per version: reference={ref_bytes} copy={copy_bytes} ckpt={checkpoint_bytes}"
        )
    assert copy_bytes > checkpoint_bytes
    assert ref_bytes < 20_000

    client = MlflowClient()
    tags = client.get_model_version(tracking.model_name(TASK), ref_version).tags
    assert tags["eto.checkpoint_storage"] == "reference" and tags["eto.checkpoint"] == str(checkpoint)
    assert client.get_model_version(tracking.model_name(TASK), copy_version).tags[
        "eto.checkpoint_storage"
    ] == ("copy")

    conv = conversation(tiny_model_dir, expert_sample)
    expected = TransformersBackend(checkpoint).generate([conv], GenerationConfig(max_new_tokens=8))
    for version in (ref_version, copy_version):
        model = mlflow.pyfunc.load_model(f"models:/{tracking.model_name(TASK)}/{version}")
        assert model.predict([conv], params={"max_new_tokens": 8}) == expected


def test_a_changed_or_missing_checkpoint_is_refused_with_the_reason_but_a_copy_still_loads(
    tmp_path, tiny_model_dir, expert_sample
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_model_dir[0], checkpoint)
    ref_version = register(uri, tmp_path, checkpoint, copy=False)
    copy_version = register(uri, tmp_path, checkpoint, copy=True)
    name = tracking.model_name(TASK)

    (checkpoint / "config.json").write_text((checkpoint / "config.json").read_text() + "\n")
    with pytest.raises(CheckpointReferenceError, match="changed since.*COPY_CHECKPOINTS"):
        mlflow.pyfunc.load_model(f"models:/{name}/{ref_version}")

    shutil.rmtree(checkpoint)
    with pytest.raises(CheckpointReferenceError, match="does not exist"):
        mlflow.pyfunc.load_model(f"models:/{name}/{ref_version}")
    model = mlflow.pyfunc.load_model(f"models:/{name}/{copy_version}")
    assert (
        len(model.predict([conversation(tiny_model_dir, expert_sample)], params={"max_new_tokens": 4})) == 1
    )


def test_copy_setting_defaults_to_reference_and_is_validated():
    from eto_assets.config.settings import read_flag

    assert MlflowTracking().copy_checkpoints is read_flag("ETO_MLFLOW_COPY_CHECKPOINTS")
    assert read_flag("ETO_MLFLOW_COPY_CHECKPOINTS", {}) is False
    assert read_flag("ETO_MLFLOW_COPY_CHECKPOINTS", {"ETO_MLFLOW_COPY_CHECKPOINTS": "true"}) is True
    with pytest.raises(SettingError, match="ETO_MLFLOW_COPY_CHECKPOINTS='maybe'"):
        read_flag("ETO_MLFLOW_COPY_CHECKPOINTS", {"ETO_MLFLOW_COPY_CHECKPOINTS": "maybe"})
