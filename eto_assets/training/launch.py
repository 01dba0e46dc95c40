"""Run SFT or DPO from a JSON spec, in this process or under ``accelerate launch``.

Multi-GPU training (DeepSpeed ZeRO through accelerate) needs one process per GPU, which a Dagster
step cannot be; the assets therefore write a spec and start

    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml \\
        -m eto_assets.training.launch SPEC.json

and read ``train_result.json`` back from the output folder. Without an accelerate config the same
code runs in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from eto_assets.config.training import DPOTrainConfig, TrainConfig
from eto_assets.data.files import atomic_write_json, folder_identity
from eto_assets.training.common import RESULT_FILE, TrainResult

__all__ = ["RESULT_FILE", "TrainSpec", "main", "plan_training", "run_spec", "train"]


@dataclass(frozen=True)
class TrainSpec:
    algo: str  # "sft" | "dpo"
    model: str
    data: str  # expert trajectories (sft) or preference pairs (dpo), JSONL
    prompt_book: str
    output_dir: str
    params: TrainConfig
    threads: int | None = None  # torch threads; None: every core (training has the machine to itself)

    def write(self, path: Path) -> Path:
        record = {**self.__dict__, "params": self.params.model_dump()}
        return atomic_write_json(path, record)

    @classmethod
    def read(cls, path: Path) -> TrainSpec:
        record = json.loads(path.read_text())
        config = DPOTrainConfig if record["algo"] == "dpo" else TrainConfig
        return cls(**{**record, "params": config(**record["params"])})


def plan_training(
    algo: str,
    model: str,
    data: str,
    prompt_book: str,
    checkpoints: Path,
    params: TrainConfig,
    *,
    also: tuple[str, ...] = (),
) -> TrainSpec:
    """The spec whose output folder under ``checkpoints`` is named by what it trains (the model,
    data and prompt book, and ``also``: any other input, such as a reward model; by identity) and
    how (the parameters). A retrain with other inputs or settings writes a new folder, so the weights
    a registered model version names never change, and a rerun of the same training (after a kill)
    resumes in the same folder."""
    identity = [
        algo,
        *(folder_identity(p) for p in (model, data, prompt_book, *also)),
        params.model_dump(mode="json"),
    ]
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return TrainSpec(algo, model, data, prompt_book, str(Path(checkpoints) / key), params)


def run_spec(spec: TrainSpec) -> TrainResult:
    from eto_assets.agent.backends import set_torch_threads
    from eto_assets.agent.prompt import PromptBook
    from eto_assets.data.schemas import read_pairs, read_trajectories

    # Inference in this process may have lowered torch's thread count to leave cores to the
    # environments; training has the machine to itself.
    set_torch_threads(spec.threads or os.cpu_count())
    book = PromptBook.read(Path(spec.prompt_book))
    out = Path(spec.output_dir)
    if spec.algo == "sft":
        from eto_assets.training.sft import train_sft

        result = train_sft(spec.model, read_trajectories(Path(spec.data)), book, out, spec.params)
    elif spec.algo == "dpo":
        from eto_assets.training.dpo import train_dpo

        if not isinstance(spec.params, DPOTrainConfig):
            raise TypeError("a DPO training spec needs DPO parameters (beta)")
        result = train_dpo(spec.model, read_pairs(Path(spec.data)), book, out, spec.params)
    else:
        raise ValueError(f"training spec: unknown algo {spec.algo!r} (sft | dpo)")
    return result  # RESULT_FILE was written into the checkpoint before it was swapped in


def train(spec: TrainSpec, accelerate_config: str | None = None) -> TrainResult:
    """In-process without ``accelerate_config``; otherwise one process per device via accelerate."""
    if not accelerate_config:
        return run_spec(spec)
    out = Path(spec.output_dir)
    spec_path = spec.write(out.parent / f"{out.name}.spec.json")
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        accelerate_config,
        "-m",
        "eto_assets.training.launch",
        str(spec_path),
    ]
    subprocess.run(cmd, check=True)
    payload = json.loads((out / RESULT_FILE).read_text())
    return TrainResult(out, payload["metrics"], payload["log_history"], payload["num_examples"])


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m eto_assets.training.launch SPEC.json", file=sys.stderr)
        return 2
    spec = TrainSpec.read(Path(args[0]))
    run_spec(spec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
