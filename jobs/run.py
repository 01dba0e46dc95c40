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

REPO = Path(__file__).resolve().parents[1]


def prepare_environment(home: Path) -> Path:
    """Default DAGSTER_HOME to ``<ETO_HOME>/dagster`` with the project's dagster.yaml in it."""
    os.environ.setdefault("ETO_HOME", str(home))
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(home / "dagster"))).resolve()
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    dagster_home.mkdir(parents=True, exist_ok=True)
    if not (dagster_home / "dagster.yaml").exists():
        shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    return dagster_home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="sciworld", help="sciworld | alfworld | webshop")
    parser.add_argument(
        "--profile", default=os.environ.get("ETO_PROFILE", "tiny"), help="micro | tiny | paper | FILE"
    )
    parser.add_argument("--base-model", default=os.environ.get("ETO_BASE_MODEL", "tiny"))
    parser.add_argument("--backend", default=os.environ.get("ETO_BACKEND", "transformers"))
    args = parser.parse_args(argv)

    home = Path(os.environ.get("ETO_HOME", ".eto")).resolve()
    dagster_home = prepare_environment(home)

    from dagster import DagsterInstance

    from eto_assets.config.profile import TASKS, ProfileError, load_profile
    from eto_assets.definitions import defs, iteration_count
    from eto_assets.layout import ArtifactLayout
    from eto_assets.report import write_summary
    from resources.mlflow_tracking import MlflowTracking

    if args.task not in TASKS:
        print(f"error: unknown task {args.task!r}; known tasks: {list(TASKS)}", file=sys.stderr)
        return 2
    try:
        load_profile(args.profile)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

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
    _, table, best = write_summary(ArtifactLayout(home, args.task), iteration_count())
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
