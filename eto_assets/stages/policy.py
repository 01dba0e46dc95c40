"""Which checkpoint is the policy of each iteration (``iteration_k/policy.json``).

Exploration and DPO of iteration k read the policy of iteration k-1; evaluation reads iteration k's.
A DPO stage with no pairs carries the previous policy over, so the chain never breaks. The record
names the checkpoint only: its registered model version lives in MLflow and in Dagster's metadata,
never in the stage's files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from eto_assets.data.files import atomic_write_json
from eto_assets.stages.layout import ArtifactLayout


@dataclass(frozen=True)
class PolicyRecord:
    checkpoint: str
    carried_over_from: int | None = None  # the iteration whose policy this one repeats

    def write(self, layout: ArtifactLayout, iteration: int) -> None:
        path = layout.policy_json(iteration)
        atomic_write_json(path, {k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def read(cls, layout: ArtifactLayout, iteration: int) -> PolicyRecord:
        path = layout.policy_json(iteration)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no policy for iteration {iteration} of {layout.task}; materialize that "
                "iteration's checkpoint first"
            )
        record = json.loads(path.read_text())
        return cls(checkpoint=str(record["checkpoint"]), carried_over_from=record.get("carried_over_from"))
