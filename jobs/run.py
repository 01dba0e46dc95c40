"""Run the whole ETO graph for one task from the command line, then print reward by iteration.

The run is recorded in the Dagster instance at ``$DAGSTER_HOME`` like a run launched from the UI:
it executes the code location's own ``eto_job`` (same snapshot) and carries the location's label,
so it is listed under Jobs > eto_job > Runs and re-executes from the UI without a version warning.

Before launching, it checks the settings (backend, base model folder, a writable home, a reachable
MLflow server; exit 2 with one line), sweeps runs left STARTED/RUNNING by a killed process, records
the run's settings as observations of the ``settings/*`` source assets, and runs only the assets
Dagster calls stale or missing, plus those whose files no longer match the data version Dagster
recorded (``--force`` reruns everything).

    python -m jobs.run --task sciworld --profile tiny
"""

import argparse
import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from eto_assets.config import settings
from eto_assets.config.profile import METHODS
from jobs import console

REPO = Path(__file__).resolve().parents[1]
INSTANCE_LOCK = ".eto-instance.lock"


def prepare_instance_home(home: Path) -> Path:
    """The Dagster instance folder (``DAGSTER_HOME``, default ``<ETO_HOME>/dagster``) with the
    project's dagster.yaml in it."""
    dagster_home = settings.dagster_home(home)
    dagster_home.mkdir(parents=True, exist_ok=True)
    if not (dagster_home / "dagster.yaml").exists():
        tmp = dagster_home / f".dagster.yaml.{os.getpid()}"
        shutil.copy(REPO / "dagster.yaml", tmp)
        os.replace(tmp, dagster_home / "dagster.yaml")  # never a half-copied file for another process
    settings.use_dagster_home(dagster_home)
    return dagster_home


def open_instance(dagster_home: Path):
    """The instance at ``dagster_home``, created (storage tables, migrations) by one process at a time:
    two runs started at once in a fresh home would otherwise both create the sqlite tables and one
    would crash (``table secondary_indexes already exists``)."""
    from dagster import DagsterInstance

    from eto_assets.assets.locks import exclusive

    with exclusive(dagster_home / INSTANCE_LOCK, wait=True):
        instance = DagsterInstance.from_config(str(dagster_home))
        instance.get_runs(limit=1)  # run storage (created with the instance)
        if instance.schedule_storage is not None:
            instance.schedule_storage.all_instigator_state()  # schedule storage, created lazily
    return instance


def remote_job_origin(job_name: str = "eto_job"):
    """Where the UI and the daemon find ``job_name``: the code location ``workspace.yaml`` loads. A run
    that carries it re-executes from the UI ("Re-execute all", "from failure") like one the UI launched;
    without it the webserver fails on ``check.not_none(parent_run.remote_job_origin)``."""
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    (location,) = location_origins_from_yaml_paths([str(REPO / "workspace.yaml")])
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)


def create_run(
    job, task: str, run_config: dict, instance, asset_selection=None, tags=None, worker: bool = True
):
    """A run of the reconstructable ``job`` (``eto_job``) for ``task`` in ``instance``, created as the
    UI creates its runs: with the code location's origin, the job's tags (the device tag) and, when
    this process will execute it, worker tags naming this process."""
    from dagster._core.storage.tags import PARTITION_NAME_TAG, REPOSITORY_LABEL_TAG
    from dagster._core.utils import make_new_run_id

    from eto_assets.assets.workers import worker_tags

    job_def = job.get_definition()
    run_id = make_new_run_id()
    origin = remote_job_origin()
    all_tags = {
        **job_def.run_tags,  # the job's own (the device tag), as execute_job merges them
        PARTITION_NAME_TAG: task,
        REPOSITORY_LABEL_TAG: f"__repository__@{origin.location_name}",
        **(worker_tags(run_id=run_id) if worker else {}),
        **(tags or {}),
    }
    return instance.create_run_for_job(
        job_def=job_def,
        run_id=run_id,
        run_config=run_config,
        tags=all_tags,
        job_code_origin=job.get_python_origin(),
        remote_job_origin=origin,
        asset_selection=frozenset(asset_selection) if asset_selection else None,
    )


def reconstructable_job():
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repository = ReconstructableRepository.for_module(
        "eto_assets.definitions", "defs", working_directory=str(REPO)
    )
    return repository.get_reconstructable_job("eto_job")


def execute(task: str, run_config: dict, instance, asset_selection=None, tags=None):
    """Execute ``eto_job`` for ``task`` in this process, as a run of the code location (only the
    assets of ``asset_selection`` when given), so the terminal shows its progress and Ctrl-C stops it."""
    from dagster._core.execution.api import execute_run

    job = reconstructable_job()
    return execute_run(job, create_run(job, task, run_config, instance, asset_selection, tags), instance)


def enqueue(task: str, run_config: dict, instance, asset_selection=None) -> str:
    """Put the run in the instance's queue, as the UI's launchpad does: the daemon launches it when the
    device limits allow (``--queue``). The run's id."""
    dagster_run = create_run(reconstructable_job(), task, run_config, instance, asset_selection, worker=False)
    instance.submit_run(dagster_run.run_id, workspace=None)  # the queued coordinator needs none
    return dagster_run.run_id


# Options that replace a setting: given, the variable is neither read nor checked.
OPTION_SETTINGS = {"profile": "ETO_PROFILE", "base_model": "ETO_BASE_MODEL", "backend": "ETO_BACKEND"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="sciworld", help="sciworld | alfworld | webshop")
    parser.add_argument(
        "--profile", help="micro | tiny | small | paper | FILE (default: $ETO_PROFILE, else tiny)"
    )
    parser.add_argument("--base-model", help="tiny | a model folder (default: $ETO_BASE_MODEL, else tiny)")
    parser.add_argument("--backend", help="transformers | vllm | openai (default: $ETO_BACKEND)")
    parser.add_argument(
        "--methods",
        help=f"methods beside SFT: a comma list of {', '.join(METHODS)}, or all (default: the profile's "
        "`methods`, ETO alone in the shipped ones)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rerun every asset, even those up to date (same inputs)"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print everything the run prints (Dagster's events, the trainers' logs) instead of one line "
        "per stage, the rest going to a log file under $ETO_HOME/logs",
    )
    parser.add_argument(
        "--queue",
        action="store_true",
        help="put the run in the instance's queue for the daemon to launch (`make ui` runs one), as the "
        "UI's launchpad does, instead of running it in this process",
    )
    args = parser.parse_args(argv)
    args.from_options = {name for attr, name in OPTION_SETTINGS.items() if getattr(args, attr) is not None}
    for attr, name in OPTION_SETTINGS.items():
        if getattr(args, attr) is None:
            setattr(args, attr, settings.read(name))
    return args


def run_profile(args: argparse.Namespace):
    """The profile the run uses: the named one, with ``--methods`` where given."""
    from eto_assets.config.profile import load_profile

    profile = load_profile(args.profile)
    return profile.with_methods(args.methods) if getattr(args, "methods", None) else profile


def check_inputs(args: argparse.Namespace, iterations: int) -> str | None:
    """Problems found before any work starts, as one line; None when the run can start."""
    from eto_assets.config.profile import TASKS, ProfileError, check_profile_for_model

    if args.task not in TASKS:
        return f"unknown task {args.task!r}; known tasks: {list(TASKS)}"
    try:
        profile = run_profile(args)
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


def check_settings(args: argparse.Namespace, home: Path) -> str | None:
    """Settings that would fail late (unknown or uninstalled backend, missing or truncated base model,
    unwritable home or Dagster home, a tracking server that is unreachable or not MLflow, an
    unreachable OpenAI endpoint), as one line; None when fine. Creates nothing."""
    from resources.preflight import check_folder_writable, preflight

    problems = preflight(
        home=home,
        backend=args.backend,
        base_model=args.base_model,
        tracking_uri=settings.read("MLFLOW_TRACKING_URI"),
        create_home=False,
    )
    dagster_home = check_folder_writable(settings.dagster_home(home), "DAGSTER_HOME")
    problems += [dagster_home] if dagster_home else []
    return "; ".join(problems) if problems else None


INVOCATION_TAG = "eto/cli_invocation"  # finds this command's Dagster run when it is interrupted


def failure_line(exc: BaseException, home: Path) -> str:
    """An unexpected failure of the command as one line (a full disk names its filesystem), with
    where its traceback was written (the system's temporary folder: ETO_HOME may be the full disk)."""
    import tempfile
    import traceback

    from eto_assets.assets.errors import root_cause

    _, line = root_cause(exc, [home, settings.dagster_home(home)])
    try:
        fd, path = tempfile.mkstemp(prefix="eto-cli-", suffix=".traceback.txt")
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(traceback.format_exception(exc)))
    except OSError:
        return line
    return f"{line} (traceback: {path})"


def mark_pipeline(mlflow_uri: str, task: str, run_id: str | None, status: str) -> None:
    """The run's parent MLflow run ends ``status`` (FAILED, KILLED) unless a stage already marked it
    (an interrupted stage marks it KILLED). Never fails the command: it reports the run's outcome."""
    from eto_assets.assets.tracking import end_pipeline

    if run_id is None:
        return
    try:
        end_pipeline(mlflow_uri, task, run_id, status)
    except Exception as exc:
        print(f"warning: could not mark the run's MLflow parent run {status}: {' '.join(str(exc).split())}")


def interrupted_run_id(instance, invocation: str) -> str | None:
    from dagster import RunsFilter

    runs = instance.get_runs(filters=RunsFilter(tags={INVOCATION_TAG: invocation}), limit=1)
    return runs[0].run_id if runs else None


def previous_report(layout) -> str:
    """What a failed run prints instead of the table: the table on disk is an earlier run's."""
    path = layout.summary_md
    if not path.is_file():
        return "(no table: this run failed)"
    written = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    return f"(no table: this run failed; the last complete report, written {written}, is {path})"


def select_assets(
    args: argparse.Namespace, home: Path, instance, iterations: int
) -> tuple[list[str], dict[str, str]]:
    """Record the run's settings as observations, then the assets to run (table order) and, for each
    asset, why it runs or is skipped: what Dagster calls stale or missing, and what follows."""
    from dagster import Definitions

    from eto_assets.assets.graph import build_assets
    from eto_assets.assets.table import VersionInputs, inactive_keys, settings_groups, stage_table
    from eto_assets.assets.versions import observe_settings, settings_versions, stale_assets
    from eto_assets.stages.layout import ArtifactLayout
    from resources import default_resources

    profile = run_profile(args)
    table, groups = stage_table(iterations), settings_groups(iterations)
    inputs = VersionInputs(args.base_model, args.backend, settings.read("ETO_DATA_DIR"))
    observe_settings(instance, settings_versions(groups, profile, args.task, inputs), args.task)
    if args.force:
        return [spec.key for spec in table], {spec.key: "--force" for spec in table}
    asset_graph = Definitions(
        assets=build_assets(iterations), resources=default_resources()
    ).resolve_asset_graph()
    layout = ArtifactLayout(home, args.task)
    return stale_assets(
        instance, asset_graph, table, args.task, layout, inactive_keys(table, profile, args.task)
    )


def step_failures(result) -> list[str]:
    """``error: <stage>: <root cause>``, one line per failed step."""
    lines = []
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.event_specific_data
        failure = getattr(data, "user_failure_data", None)
        metadata = dict(failure.metadata) if failure is not None and failure.metadata else {}
        stage = metadata.get("stage")
        stage = getattr(stage, "value", stage) or event.step_key
        if failure is not None and failure.description:
            cause = failure.description
        elif was_interrupted(event):
            cause = "interrupted (SIGINT or SIGTERM)"
        else:
            message = data.error.message.strip() if data.error else "unknown error"
            cause = message.splitlines()[-1] if message else "unknown error"
        lines.append(f"error: {stage}: {' '.join(cause.split())}")
    return lines


def was_interrupted(event) -> bool:
    """A step failure that is Ctrl-C or SIGTERM (Dagster turns both into an interruption of the step)."""
    error = getattr(event.event_specific_data, "error", None)
    return error is not None and error.cls_name == "DagsterExecutionInterruptedError"


def check_warnings(result) -> list[str]:
    """``warning: <asset>: <check>: <description>`` for each WARN check that did not pass."""
    lines = []
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        if not evaluation.passed and evaluation.severity.value == "WARN":
            lines.append(
                f"warning: {evaluation.asset_key.to_user_string()}: {evaluation.check_name}: "
                f"{evaluation.description}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problems = settings.validate(skip=args.from_options)  # every variable, before anything reads one
    if problems:
        print(f"error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    home, iterations = settings.home(), settings.iterations()
    problem = check_inputs(args, iterations) or check_settings(args, home)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        with sigterm_as_interrupt():
            return run(args, home, iterations)
    except KeyboardInterrupt:
        print(
            "error: interrupted (SIGINT or SIGTERM); the run and its MLflow runs are marked so",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # one line (a full disk named), not a traceback
        print(f"error: {failure_line(exc, home)}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM stops the command like Ctrl-C (Dagster does the same while a step runs), so a run
    stopped between steps is also marked, never killed without a word."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, home: Path, iterations: int) -> int:
    """Launch the run (the settings are checked) and print its outcome; the exit status."""
    import uuid

    dagster_home = prepare_instance_home(home)
    settings.offline_environment()

    from dagster import AssetKey

    from eto_assets.assets.table import inactive_keys, settings_groups, stage_table
    from eto_assets.stages import report_table
    from eto_assets.stages.layout import ArtifactLayout
    from jobs.sweep import sweep
    from resources.mlflow_tracking import MlflowTracking

    mlflow_uri = MlflowTracking().resolved_uri(home)
    run_config = {
        "resources": {
            "settings": {
                "config": {
                    "home": str(home),
                    "profile": args.profile,
                    "base_model": args.base_model,
                    **({"methods": args.methods} if getattr(args, "methods", None) else {}),
                }
            },
            "inference": {"config": {"backend": args.backend}},
        }
    }
    started = time.perf_counter()
    instance = open_instance(dagster_home)
    with instance:
        for line in sweep(instance, mlflow_uri).lines():
            print(f"sweep: {line}")
        selected, reasons = select_assets(args, home, instance, iterations)
        inactive = inactive_keys(stage_table(iterations), run_profile(args), args.task)
        for key, why in reasons.items():
            if key not in inactive:
                print(f"{'run ' if key in selected else 'skip'} {key}: {why}")
        if inactive:
            print(f"(and {len(inactive)} assets of methods or iterations the profile leaves out: no-ops)")
        failures, warnings, success, interrupted = [], [], True, False
        if selected:
            observed = [group.key for group in settings_groups(iterations)]  # the run records its settings
            keys = [AssetKey.from_user_string(k) for k in (*observed, *selected)]
            invocation = uuid.uuid4().hex
            if getattr(args, "queue", False):
                run_id = enqueue(args.task, run_config, instance, keys)
                print(f"queued run {run_id}: the daemon launches it when the run queue allows (make ui)")
                return 0
            log = console.log_path(home, args.task)
            quiet = {*observed, *inactive}
            try:
                with (
                    contextlib.nullcontext(sys.stdout) if args.verbose else console.output_to_log(log)
                ) as terminal:
                    if not args.verbose:
                        print(f"running {len(keys)} steps; the full output goes to {log}", file=terminal)
                    with (
                        console.StepProgress(
                            instance,
                            lambda: interrupted_run_id(instance, invocation),
                            len(keys),
                            lambda step: step.replace("__", "/") in quiet,
                            terminal,
                        ),
                        execute(
                            args.task, run_config, instance, asset_selection=keys,
                            tags={INVOCATION_TAG: invocation},
                        ) as result,
                    ):  # fmt: skip
                        success, run_id = result.success, result.run_id
                        failures, warnings = step_failures(result), check_warnings(result)
                        interrupted = any(e.is_step_failure and was_interrupted(e) for e in result.all_events)
            except KeyboardInterrupt:
                mark_pipeline(mlflow_uri, args.task, interrupted_run_id(instance, invocation), "KILLED")
                raise
            if not success:  # the parent MLflow run shows how the pipeline ended
                mark_pipeline(mlflow_uri, args.task, run_id, "KILLED" if interrupted else "FAILED")
        else:
            print("every asset is up to date: nothing to run (--force reruns everything)")
    elapsed = time.perf_counter() - started
    print(
        f"\nETO on {args.task} (profile {args.profile}, base model {args.base_model}): "
        f"{'succeeded' if success else 'FAILED'} in {elapsed / 60:.1f} min\n"
    )
    if success:
        profile = run_profile(args)
        selection = profile.selection
        table, best = report_table(ArtifactLayout(home, args.task), iterations, selection, profile.methods)
        print(table if best is not None else "(no iteration was evaluated)")
        if best is not None:
            print(
                f"\nchampion: iteration {best.iteration} (selection: {selection}; the rule is in summary.md)"
            )
    else:  # the files on disk hold an earlier run's numbers, not this one's
        print(previous_report(ArtifactLayout(home, args.task)))
    if warnings:
        print()
        for warning in warnings:
            print(warning)
    if failures:
        print()
        for failure in failures:
            print(failure)
            print(failure, file=sys.stderr)
    if selected and not getattr(args, "queue", False) and not args.verbose:
        print(f"\nrun log:     {log}")
    print(f"\nDagster UI:  make ui   (DAGSTER_HOME={dagster_home}; then open http://127.0.0.1:3000)")
    print(f"MLflow UI:   make mlflow-ui   (store {mlflow_uri}; then open http://127.0.0.1:5000)")
    return 0 if success else 130 if interrupted else 1


if __name__ == "__main__":
    raise SystemExit(main())
