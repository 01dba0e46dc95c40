"""Run the whole ETO graph for one task from the command line, recorded in the Dagster instance
at ``$DAGSTER_HOME`` (so ``dagster dev`` shows the run afterwards), then print reward by iteration.

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
    from eto_assets.config.profile import TASKS, ProfileError, load_profile

    if args.task not in TASKS:
        return f"unknown task {args.task!r}; known tasks: {list(TASKS)}"
    try:
        profile = load_profile(args.profile)
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

    from eto_assets.definitions import defs
    from eto_assets.layout import ArtifactLayout
    from eto_assets.stages import write_summary
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
    with DagsterInstance.get() as instance:
        result = defs.resolve_job_def("eto_job").execute_in_process(
            run_config=run_config, instance=instance, partition_key=args.task, raise_on_error=False
        )
    elapsed = time.perf_counter() - started
    table, best = write_summary(ArtifactLayout(home, args.task), iterations)
    print(
        f"\nETO on {args.task} (profile {args.profile}, base model {args.base_model}): "
        f"{'succeeded' if result.success else 'FAILED'} in {elapsed / 60:.1f} min\n"
    )
    print(table if best is not None else "(no iteration was evaluated)")
    if best is not None:
        print(f"\nbest iteration: {best.iteration} (by seen-split reward)")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                print(f"\nstep {event.step_key} failed: {event.event_specific_data.error.message.strip()}")
    mlflow_uri = MlflowTracking().resolved_uri(home)
    print(f"\nDagster UI:  make ui   (DAGSTER_HOME={dagster_home}; then open http://127.0.0.1:3000)")
    print(f"MLflow UI:   make mlflow-ui   (store {mlflow_uri}; then open http://127.0.0.1:5000)")
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
