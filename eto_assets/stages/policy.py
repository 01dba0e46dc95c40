"""Which checkpoint is the policy of each iteration (``iteration_k/policy.json``).

Exploration and DPO of iteration k read the policy of iteration k-1; evaluation reads iteration k's.
A DPO stage with no pairs carries the previous policy over, so the chain never breaks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from eto_assets.data.files import atomic_write_json
from eto_assets.stages.layout import ArtifactLayout


def model_name(task: str) -> str:
    """The registered model whose versions are a task's checkpoints."""
    return f"eto-{task}"


@dataclass(frozen=True)
class PolicyRecord:
    checkpoint: str
    model_version: str = ""  # version of the registered model eto-<task>, when registered
    mlflow_run_id: str = ""
    carried_over_from: int | None = None  # the iteration whose policy this one repeats

    def with_registration(self, version: str, run_id: str) -> PolicyRecord:
        return replace(self, model_version=version, mlflow_run_id=run_id)

    def write(self, layout: ArtifactLayout, iteration: int) -> None:
        path = layout.policy_json(iteration)
        atomic_write_json(path, {k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def read(cls, layout: ArtifactLayout, iteration: int) -> PolicyRecord:
        path = layout.policy_json(iteration)
        if not path.is_file():
            asset = "sft_checkpoint" if iteration == 0 else f"iteration_{iteration}/dpo_checkpoint"
            raise FileNotFoundError(
                f"{path}: no policy for iteration {iteration} of {layout.task}; materialize {asset} first"
            )
        record = json.loads(path.read_text())
        return cls(
            checkpoint=str(record["checkpoint"]),
            model_version=str(record.get("model_version", "")),
            mlflow_run_id=str(record.get("mlflow_run_id", "")),
            carried_over_from=record.get("carried_over_from"),
        )
