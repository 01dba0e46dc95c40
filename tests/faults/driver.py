"""Run one ETO stage of the nano profile on ScienceWorld: ``python -m tests.faults.driver HOME STAGE``.

The kill test starts it as a subprocess, SIGKILLs it at a random point and runs it again."""

from __future__ import annotations

import sys
from pathlib import Path

STAGES = ("expert", "base_model", "sft", "eval0", "explore", "pairs", "dpo", "eval1")
NANO = Path(__file__).resolve().parents[1] / "fixtures" / "nano.yaml"


def run_stage(home: Path, stage: str) -> None:
    from eto_assets import stages
    from eto_assets.agent.backends import load_backend
    from eto_assets.config.profile import load_profile
    from eto_assets.envs.pool import EnvironmentPool
    from eto_assets.envs.registry import BenchmarkSources

    run = stages.open_task_run("sciworld", load_profile(str(NANO)), BenchmarkSources(home=home))

    def open_backend(path: str):
        return load_backend("transformers", path, max_batch_size=8)

    with EnvironmentPool() as envs:
        if stage == "expert":
            stages.generate_expert_data(run, envs)
        elif stage == "base_model":
            stages.build_base_model(run, "tiny")
        elif stage == "sft":
            stages.train_sft_policy(run, "tiny")
        elif stage.startswith("eval"):
            stages.evaluate(run, int(stage[4:]), open_backend, envs)
        elif stage == "explore":
            stages.explore(run, 1, open_backend, envs)
        elif stage == "pairs":
            stages.make_pairs(run, 1)
        elif stage == "dpo":
            stages.train_dpo_policy(run, 1)
        else:
            raise SystemExit(f"unknown stage {stage!r}; one of {STAGES}")


if __name__ == "__main__":
    run_stage(Path(sys.argv[1]), sys.argv[2])
