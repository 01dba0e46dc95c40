"""An MLflow pyfunc wrapper around a policy checkpoint, so every registered version of
``eto-<task>`` can be loaded with ``mlflow.pyfunc.load_model`` and asked for the agent's next turn.

A version holds its checkpoint in one of two ways:

* by reference (the default): the model's only artifact is a small JSON file
  (:data:`REFERENCE_ARTIFACT`) naming the checkpoint folder by absolute path, with its identity
  (:func:`~eto_assets.data.files.folder_identity`). Loading reads the folder in place and refuses,
  saying why, when it is gone or its files have changed since registration. Versions cost a few kilobytes, but
  only a machine that sees that folder can load them.
* by copy (``ETO_MLFLOW_COPY_CHECKPOINTS=true``): the whole folder is an artifact
  (:data:`CHECKPOINT_ARTIFACT`), so the version loads anywhere the artifact store is reachable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import mlflow.pyfunc

from eto_assets.data.files import folder_identity

CHECKPOINT_ARTIFACT = "checkpoint"
REFERENCE_ARTIFACT = "checkpoint_ref"
REFERENCE_FILE = "checkpoint_ref.json"


class CheckpointReferenceError(RuntimeError):
    """A registered version refers to a checkpoint folder that is gone or has changed."""


def write_reference(checkpoint: Path, out: Path) -> Path:
    """Write the JSON reference to ``checkpoint`` (absolute path and file fingerprint) into ``out``."""
    checkpoint = Path(checkpoint).resolve()
    if not (checkpoint / "config.json").is_file():
        raise CheckpointReferenceError(f"{checkpoint} is not a Hugging Face model folder (no config.json)")
    identity = folder_identity(checkpoint)
    out.write_text(json.dumps({"checkpoint": str(checkpoint), "identity": identity}, indent=1))
    return out


def read_reference(reference: Path) -> Path:
    """The checkpoint folder a reference names, checked to be unchanged since registration."""
    data = json.loads(Path(reference).read_text())
    folder = Path(data["checkpoint"])
    hint = (
        "this model version refers to its checkpoint instead of holding a copy "
        "(register with ETO_MLFLOW_COPY_CHECKPOINTS=true to copy checkpoints into MLflow)"
    )
    if not folder.is_dir():
        raise CheckpointReferenceError(f"checkpoint folder {folder} does not exist on this machine; {hint}")
    if folder_identity(folder) != data["identity"]:
        raise CheckpointReferenceError(
            f"checkpoint folder {folder} changed since this version was registered; {hint}"
        )
    return folder


def signature():
    """Params only (inputs are free-form conversations): without a params schema MLflow drops
    ``params`` at predict time."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    return ModelSignature(params=ParamSchema([ParamSpec("max_new_tokens", "long", 128)]))


def checkpoint_from_artifacts(artifacts: Mapping[str, str]) -> Path:
    """The checkpoint folder of a loaded model, whichever way it was registered."""
    if REFERENCE_ARTIFACT in artifacts:
        return read_reference(Path(artifacts[REFERENCE_ARTIFACT]))
    return Path(artifacts[CHECKPOINT_ARTIFACT])


class PolicyModel(mlflow.pyfunc.PythonModel):
    """Input: a list of chat conversations (or a DataFrame with a ``messages`` column).
    Output: the agent's next message for each, greedy."""

    def load_context(self, context) -> None:
        from eto_assets.agent.backends import TransformersBackend

        self._backend = TransformersBackend(checkpoint_from_artifacts(context.artifacts))

    def predict(self, context, model_input, params=None):  # untyped: MLflow infers schemas from hints
        from eto_assets.agent.backends import GenerationConfig

        if hasattr(model_input, "to_dict"):
            conversations = list(model_input["messages"])
        else:
            conversations = list(model_input)
        params = params or {}
        config = GenerationConfig(max_new_tokens=int(params.get("max_new_tokens", 128)))
        return [a or "" for a in self._backend.generate(conversations, config)]
