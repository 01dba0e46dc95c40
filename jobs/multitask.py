"""One policy for every benchmark: SFT on the union of their expert data, ETO's iterations with
exploration and pairs per benchmark and one DPO on the union of the pairs, evaluation per benchmark
(``eto_assets/stages/multitask.py``). Then each benchmark's table: the ``multitask-k`` rows beside
the per-task policies already evaluated in the same ``ETO_HOME`` (``python -m jobs.run --task ...``).

    python -m jobs.multitask --profile micro                       # sciworld, alfworld and webshop
    python -m jobs.multitask --profile micro --tasks sciworld,webshop

It runs in this process, without Dagster; the settings are the pipeline's (``ETO_HOME``,
``ETO_DATA_DIR``, ``ETO_BASE_MODEL``, ``ETO_INFERENCE_DTYPE``, ``MLFLOW_TRACKING_URI``), and every
stage resumes like its per-task counterpart. Each stage is an MLflow run tagged
``eto.method=multitask``: a benchmark's exploration, pairs and evaluations in its own experiment
(``eto-<task>``, beside its per-task runs), the union's expert data, SFT and DPO in
``eto-multitask``, whose policies are versions of the registered model ``eto-multitask``.
Exit status 2 on a bad setting or profile, 1 on a missing input, with one line saying which.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from eto_assets.config import settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="micro", help="a profile name (configs/) or a YAML file")
    parser.add_argument("--tasks", default="sciworld,alfworld,webshop", help="a comma list of benchmarks")
    parser.add_argument("--base-model", help="tiny | a model folder (default: $ETO_BASE_MODEL, else tiny)")
    args = parser.parse_args(argv)
    settings.offline_environment()
    from eto_assets.config.profile import TASKS, ProfileError, check_profile_for_model, load_profile

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    try:
        settings.check_environment()
        if unknown:
            raise ProfileError(f"--tasks: unknown {unknown}; known: {', '.join(TASKS)}")
        if len(set(tasks)) < 2:
            raise ProfileError(f"--tasks: one policy for several benchmarks needs two or more, got {tasks}")
        profile = load_profile(args.profile)
        base_model = args.base_model or settings.base_model()
        check_profile_for_model(profile, base_model)
    except (ProfileError, settings.SettingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from eto_assets.agent.backends import ModelPathError, load_backend
    from eto_assets.assets import tracking
    from eto_assets.data.schemas import DataFormatError
    from eto_assets.envs.base import BenchmarkNotAvailable
    from eto_assets.envs.pool import EnvironmentPool
    from eto_assets.envs.registry import BenchmarkSources, UnknownTaskError
    from eto_assets.stages.expert import NoExpertData
    from eto_assets.stages.layout import MULTITASK
    from eto_assets.stages.multitask import open_multitask_run, run_multitask
    from eto_assets.stages.report import report_table
    from eto_assets.stages.result import StageResult
    from resources.mlflow_tracking import MlflowTracking

    home = settings.home()
    sources = BenchmarkSources(home=home, data_dir=settings.read_path("ETO_DATA_DIR"))
    mt = open_multitask_run(tasks, profile, sources)
    dtype, threads = settings.inference_dtype(), settings.torch_threads()

    def open_backend(path: str):
        return load_backend("transformers", path, dtype=dtype, threads=threads)

    uri = MlflowTracking().resolved_uri(home)
    artifact_root = MlflowTracking.artifact_root(home)  # used where the store is local, as the pipeline's

    def log(task: str, stage: str, iteration: int, work: Callable[[], StageResult]) -> StageResult:
        """Run a stage as an MLflow run of its benchmark's experiment (the union's: ``eto-multitask``),
        tagged ``eto.method=multitask``, and print its wall time."""
        started = time.perf_counter()
        with tracking.stage_run(
            uri, task, stage, iteration, artifact_root=artifact_root, tags={"eto.method": MULTITASK}
        ):
            result = work()
            tracking.record_result(result, task, iteration, stage)
        name = f"{task}/{stage} it{iteration}"
        print(f"  {name:<48} {(time.perf_counter() - started) / 60:6.2f} min", flush=True)
        return result

    began = time.perf_counter()
    try:
        with EnvironmentPool() as envs:
            accelerate = settings.accelerate_config()
            run_multitask(mt, base_model, open_backend, envs, str(accelerate) if accelerate else None, log)
    except (NoExpertData, BenchmarkNotAvailable, DataFormatError, ModelPathError, UnknownTaskError) as exc:
        # what the user can fix (data folder, expert file, model folder): one line naming it; the
        # stages already finished keep their files and resume on the next run
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    minutes = (time.perf_counter() - began) / 60
    print(f"\nmulti-task ({', '.join(tasks)}; profile {profile.name}) in {minutes:.1f} min")
    for task, run in mt.runs.items():
        table, _ = report_table(run.layout, mt.iterations, profile.selection, (*profile.methods, MULTITASK))
        print(f"\n{task}\n\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
