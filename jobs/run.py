"""Run the whole ETO graph for one task from the command line, then print reward by iteration.

The run is recorded in the Dagster instance at ``$DAGSTER_HOME`` like a run launched from the UI:
it executes the code location's own ``eto_job`` (same snapshot) and carries the location's label,
so it is listed under Jobs > eto_job > Runs and re-executes from the UI without a version warning.

    python -m jobs.run --task sciworld --profile tiny
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from eto_assets.config import settings

REPO = Path(__file__).resolve().parents[1]


def prepare_environment(home: Path) -> Path:
    """Default DAGSTER_HOME to ``<ETO_HOME>/dagster`` with the project's dagster.yaml in it."""
    os.environ["ETO_HOME"] = str(home)
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster").resolve()
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    dagster_home.mkdir(parents=True, exist_ok=True)
    if not (dagster_home / "dagster.yaml").exists():
        shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    return dagster_home


def code_location_name() -> str:
    """The location name ``workspace.yaml`` gives the definitions (the UI lists runs by it)."""
    import yaml

    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    return workspace["load_from"][0]["python_module"]["location_name"]


def execute(task: str, run_config: dict, instance):
    """Execute ``eto_job`` for ``task`` in this process, as a run of the code location."""
    from dagster import execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.storage.tags import PARTITION_NAME_TAG, REPOSITORY_LABEL_TAG

    repository = ReconstructableRepository.for_module(
        "eto_assets.definitions", "defs", working_directory=str(REPO)
    )
    tags = {PARTITION_NAME_TAG: task, REPOSITORY_LABEL_TAG: f"__repository__@{code_location_name()}"}
    return execute_job(repository.get_reconstructable_job("eto_job"), instance, run_config, tags=tags)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="sciworld", help="sciworld | alfworld | webshop")
    parser.add_argument("--profile", default=settings.read("ETO_PROFILE"), help="micro | tiny | paper | FILE")
    parser.add_argument("--base-model", default=settings.read("ETO_BASE_MODEL"))
    parser.add_argument("--backend", default=settings.read("ETO_BACKEND"))
    return parser.parse_args(argv)


def check_inputs(args: argparse.Namespace, iterations: int) -> str | None:
    """Problems found before any work starts, as one line; None when the run can start."""
    from eto_assets.config.profile import TASKS, ProfileError, check_profile_for_model, load_profile

    if args.task not in TASKS:
        return f"unknown task {args.task!r}; known tasks: {list(TASKS)}"
    try:
        profile = load_profile(args.profile)
        check_profile_for_model(profile, args.base_model)
    except ProfileError as exc:
        return str(exc)
    wanted = profile.iterations_for(args.task)
    if wanted > iterations:
        return (
            f"profile {profile.name!r} runs {wanted} ETO iterations for {args.task}, but the asset graph has "
            f"{iterations}: set ETO_ITERATIONS={wanted} (or lower `iterations` in the profile)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        home = settings.home()
        iterations = settings.iterations()
    except settings.SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = check_inputs(args, iterations)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    dagster_home = prepare_environment(home)

    from dagster import DagsterInstance

    from eto_assets.stages import write_summary
    from eto_assets.stages.layout import ArtifactLayout
    from resources.mlflow_tracking import MlflowTracking

    run_config = {
        "resources": {
            "settings": {
                "config": {"home": str(home), "profile": args.profile, "base_model": args.base_model}
            },
            "inference": {"config": {"backend": args.backend}},
        }
    }
    started = time.perf_counter()
    with DagsterInstance.get() as instance, execute(args.task, run_config, instance) as result:
        success = result.success
        failures = [
            f"step {e.step_key} failed: {e.event_specific_data.error.message.strip()}"
            for e in result.all_events
            if e.is_step_failure
        ]
    elapsed = time.perf_counter() - started
    table, best = write_summary(ArtifactLayout(home, args.task), iterations)
    print(
        f"\nETO on {args.task} (profile {args.profile}, base model {args.base_model}): "
        f"{'succeeded' if success else 'FAILED'} in {elapsed / 60:.1f} min\n"
    )
    print(table if best is not None else "(no iteration was evaluated)")
    if best is not None:
        print(f"\nbest iteration: {best.iteration} (by seen-split reward)")
    for failure in failures:
        print(f"\n{failure}")
    mlflow_uri = MlflowTracking().resolved_uri(home)
    print(f"\nDagster UI:  make ui   (DAGSTER_HOME={dagster_home}; then open http://127.0.0.1:3000)")
    print(f"MLflow UI:   make mlflow-ui   (store {mlflow_uri}; then open http://127.0.0.1:5000)")
    return 0 if success else 1


if __name__ == "__main__":
    raise SystemExit(main())
