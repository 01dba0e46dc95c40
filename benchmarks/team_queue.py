"""The team deployment's costs, measured side by side in one run: the services' start-up (a cold
start creates the PostgreSQL cluster, a warm one restarts it) and the wall time of three task
partitions of a profile (default ``micro``: sciworld, alfworld, webshop) run

- ``cli``: one after another with ``python -m jobs.run``, each in one process (the in-process executor),
- ``queue1``: queued with ``python -m jobs.run --queue`` and launched by ``dagster-daemon`` with one
  CPU slot (so one after another), each stage in its own process (``ETO_EXECUTOR=multiprocess``),
- ``queue2``: the same with two CPU slots (``ETO_CPU_RUNS=2``), two runs at once,

each mode in its own fresh ``ETO_HOME`` with its own PostgreSQL and MLflow server, so nothing is
reused between modes. Prints one line per mode and the ratios:

    mode=<name> wall_min=<minutes> runs=<succeeded>/<3>
    services_cold_s=<s> services_warm_s=<s>
    queue2_vs_cli=<ratio> queue2_vs_queue1=<ratio>

    python benchmarks/team_queue.py                      # micro, the three modes (about 30 min on 2 cores)
    python benchmarks/team_queue.py --profile tests/fixtures/nano.yaml --modes queue1,queue2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eto_assets.config.local_servers import free_port
from eto_assets.config.settings import child_environment
from jobs.services import read_env_file

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MODES = ("cli", "queue1", "queue2")
TASKS = ("sciworld", "alfworld", "webshop")


def services(env: dict[str, str], command: str) -> float:
    """Run ``jobs.services <command>``; its wall seconds."""
    started = time.perf_counter()
    subprocess.run([PYTHON, "-m", "jobs.services", command], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def run_statuses(env: dict[str, str]) -> dict[str, str]:
    import psycopg2

    with (
        psycopg2.connect(
            host=env["DAGSTER_PG_HOST"],
            port=int(env["DAGSTER_PG_PORT"]),
            user=env["DAGSTER_PG_USERNAME"],
            password=env["DAGSTER_PG_PASSWORD"],
            dbname="dagster",
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT run_id, status FROM runs")
        return dict(cursor.fetchall())


def run_mode(mode: str, profile: str, root: Path, log) -> tuple[float, int, float, float]:
    """(wall seconds of the three runs, how many succeeded, cold and warm services start seconds)."""
    env = child_environment(
        drop={"DAGSTER_HOME", "MLFLOW_TRACKING_URI"},
        ETO_HOME=str(root / mode),
        ETO_PG_PORT=str(free_port()),
        ETO_MLFLOW_PORT=str(free_port()),
        ETO_GPUS="0",
        ETO_CPU_RUNS="2" if mode == "queue2" else "1",
        ETO_ITERATIONS="1",
    )
    cold = services(env, "start")
    services(env, "stop")
    warm = services(env, "start")
    env.update(read_env_file(root / mode / "services.env"))
    if mode == "cli":
        env["ETO_EXECUTOR"] = "in_process"
    daemon = None
    try:
        started = time.perf_counter()
        if mode == "cli":
            done = sum(
                subprocess.run([PYTHON, "-m", "jobs.run", "--task", task, "--profile", profile],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode == 0
                for task in TASKS
            )  # fmt: skip
            return time.perf_counter() - started, done, cold, warm
        daemon = subprocess.Popen(
            [str(Path(PYTHON).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        for task in TASKS:
            subprocess.run([PYTHON, "-m", "jobs.run", "--queue", "--task", task, "--profile", profile],
                           cwd=REPO, env=env, check=True, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        while True:
            statuses = run_statuses(env)
            if len(statuses) == len(TASKS) and all(
                s in {"SUCCESS", "FAILURE", "CANCELED"} for s in statuses.values()
            ):
                break
            time.sleep(2)
        wall = time.perf_counter() - started
        return wall, sum(s == "SUCCESS" for s in statuses.values()), cold, warm
    finally:
        if daemon is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
        services(env, "stop")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="micro")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--keep", action="store_true", help="keep the homes (printed) for inspection")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"--modes: unknown {', '.join(sorted(unknown))} (known: {', '.join(MODES)})")
    root = Path(tempfile.mkdtemp(prefix="eto-team-bench-", dir="/tmp"))
    root.chmod(0o755)  # PostgreSQL's own user (the server, when we are root) must reach its folder
    walls, colds, warms = {}, [], []
    with (root / "runs.log").open("w") as log:
        try:
            for mode in modes:
                wall, done, cold, warm = run_mode(mode, args.profile, root, log)
                walls[mode] = wall
                colds.append(cold)
                warms.append(warm)
                print(f"mode={mode} wall_min={wall / 60:.2f} runs={done}/{len(TASKS)}", flush=True)
        finally:
            if args.keep:
                print(f"homes and log: {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    print(f"services_cold_s={min(colds):.1f} services_warm_s={min(warms):.1f} (best of {len(colds)})")
    for a, b in (("queue2", "cli"), ("queue2", "queue1"), ("queue1", "cli")):
        if a in walls and b in walls:
            print(f"{a}_vs_{b}={walls[b] / walls[a]:.2f}x (wall of {b} / wall of {a})")


if __name__ == "__main__":
    main()
