"""The team deployment's services on this machine, started and stopped by the project:

- PostgreSQL from Debian's package (``initdb`` in ``$ETO_HOME/services/postgres``, listening on
  127.0.0.1 only, a generated password), holding the Dagster instance (runs, events, schedules) and
  the MLflow backend store;
- an MLflow tracking server on that database, with an artifact folder it serves (``--workers 1``).

``start`` writes ``$ETO_HOME/services.env``: the variables to export (``DAGSTER_HOME`` with a
Postgres ``dagster.yaml``, the ``DAGSTER_PG_*`` values, ``MLFLOW_TRACKING_URI`` of the server, and
``ETO_EXECUTOR=multiprocess``). ``stop`` stops both by pid. Both are idempotent.

    python -m jobs.services start|stop|status     (make services / make services-stop)
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from eto_assets.config import local_servers, settings
from jobs.queue import tag_concurrency_limits

REPO = Path(__file__).resolve().parents[1]
PG_USER = "eto"
DATABASES = ("dagster", "mlflow")
DEBIAN_PG = Path("/usr/lib/postgresql")


class ServiceError(RuntimeError):
    """A service cannot start or stop; the message says which and why, in one line."""


@dataclass(frozen=True)
class Services:
    """Where the services keep their state under ``home`` and the ports they listen on."""

    home: Path
    pg_port: int
    mlflow_port: int

    @classmethod
    def from_settings(cls) -> Services:
        return cls(settings.home(), settings.port("ETO_PG_PORT"), settings.port("ETO_MLFLOW_PORT"))

    @property
    def root(self) -> Path:
        return self.home / "services"

    @property
    def pg_data(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_password_file(self) -> Path:
        return self.root / "postgres.password"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlflow-artifacts"

    @property
    def mlflow_pid_file(self) -> Path:
        return self.root / "mlflow.pid"

    @property
    def env_file(self) -> Path:
        return self.home / "services.env"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def database_uri(self, db: str, password: str) -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.pg_port}/{db}"


# ------------------------------------------------------------------ PostgreSQL


def postgres_bin() -> Path:
    """The newest Debian PostgreSQL server's binaries (``initdb``, ``pg_ctl``)."""
    found = sorted(
        DEBIAN_PG.glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    if not found:
        raise ServiceError(
            f"no PostgreSQL server under {DEBIAN_PG}: install Debian's package "
            "(`bash scripts/ensure_postgres.sh`, or `apt-get install postgresql`)"
        )
    return found[-1].parent


def as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its commands as Debian's ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def check_reachable(folder: Path) -> None:
    """As root, the ``postgres`` user must reach ``folder`` (a home under /root is closed to it)."""
    if os.geteuid() != 0:
        return
    probe = subprocess.run(as_server_user(["test", "-x", str(folder)]), capture_output=True)
    if probe.returncode != 0:
        raise ServiceError(
            f"ETO_HOME={folder.parent.parent}: the postgres user cannot reach {folder} (a parent folder "
            "is closed to other users); use an ETO_HOME under a world-readable folder such as /srv or /tmp"
        )


def postgres_pid(data: Path) -> int | None:
    """The postmaster's pid when it runs (``postmaster.pid``'s first line), else None."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def password(services: Services) -> str:
    """The database password, generated once and kept readable by this user only."""
    path = services.pg_password_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def start_postgres(services: Services) -> None:
    bindir, data = postgres_bin(), services.pg_data
    services.root.mkdir(parents=True, exist_ok=True)
    if postgres_pid(data) is not None:
        return
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        give_to_server_user(data)
        check_reachable(data)
        pwfile = services.root / ".initdb-password"
        pwfile.write_text(password(services))
        give_to_server_user(pwfile)
        try:
            run(
                as_server_user(
                    [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=scram-sha-256"]
                    + ["--pwfile", str(pwfile), "--encoding=UTF8", "--locale=C"]
                ),
                "initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
    options = f"-c listen_addresses=127.0.0.1 -p {services.pg_port} -c unix_socket_directories={data}"
    log = data / "server.log"
    run(
        as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60"])
        + ["-o", options, "start"],
        f"PostgreSQL on 127.0.0.1:{services.pg_port} (log {log})",
    )
    create_databases(services)


def create_databases(services: Services) -> None:
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=services.pg_port, user=PG_USER, password=password(services), dbname="postgres"
    )
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with connection.cursor() as cursor:
            for db in DATABASES:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{db}"')
    finally:
        connection.close()


def stop_pid(pid: int, sig: signal.Signals, what: str, group: bool = False, timeout: float = 60) -> None:
    if local_servers.stop_pid(pid, group=group, timeout=timeout, first=sig):
        print(f"services: {what} (pid {pid}) did not stop in {timeout:.0f} s: killed")


# ------------------------------------------------------------------ MLflow server


def mlflow_pid(services: Services) -> int | None:
    try:
        pid = int(services.mlflow_pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start_mlflow(services: Services) -> None:
    if mlflow_pid(services) is not None:
        return
    services.artifacts.mkdir(parents=True, exist_ok=True)
    log = services.root / "mlflow.log"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server"]
    cmd += ["--backend-store-uri", services.database_uri("mlflow", password(services))]
    cmd += ["--artifacts-destination", str(services.artifacts), "--serve-artifacts"]
    cmd += ["--host", "127.0.0.1", "--port", str(services.mlflow_port), "--workers", "1"]
    with log.open("a") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=services.root
        )
    services.mlflow_pid_file.write_text(str(process.pid))

    def failed(reason: str) -> ServiceError:
        if process.poll() is not None:
            services.mlflow_pid_file.unlink(missing_ok=True)
        tail = " ".join(log.read_text().splitlines()[-3:])
        return ServiceError(f"the MLflow server {reason} (log {log}): {tail}")

    local_servers.wait_http(f"{services.mlflow_url}/health", process, 180, failed)


# ------------------------------------------------------------------ the instance and the env file


def write_dagster_yaml(services: Services) -> Path:
    """The Postgres instance file (``dagster.postgres.yaml``) with the run queue's device limits."""
    config = yaml.safe_load((REPO / "dagster.postgres.yaml").read_text())
    config["run_coordinator"]["config"]["tag_concurrency_limits"] = tag_concurrency_limits()
    services.dagster_home.mkdir(parents=True, exist_ok=True)
    path = services.dagster_home / "dagster.yaml"
    path.write_text(
        "# written by `make services` from dagster.postgres.yaml (the run queue's limits from ETO_GPUS "
        "and ETO_CPU_RUNS)\n" + yaml.safe_dump(config, sort_keys=False)
    )
    return path


def environment(services: Services) -> dict[str, str]:
    return {
        "ETO_HOME": str(services.home),
        "DAGSTER_HOME": str(services.dagster_home),
        "DAGSTER_PG_USERNAME": PG_USER,
        "DAGSTER_PG_PASSWORD": password(services),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(services.pg_port),
        "DAGSTER_PG_DB": "dagster",
        "MLFLOW_TRACKING_URI": services.mlflow_url,
        "ETO_MLFLOW_UI_URL": services.mlflow_url,
        "ETO_EXECUTOR": "multiprocess",
    }


def write_env_file(services: Services) -> Path:
    lines = [f"export {k}={shlex.quote(v)}" for k, v in environment(services).items()]
    path = services.env_file
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the password
    with os.fdopen(fd, "w") as fh:
        fh.write("# written by `make services`; `source` it, then `make ui` or `python -m jobs.run`\n")
        fh.write("\n".join(lines) + "\n")
    return path


def read_env_file(path: Path) -> dict[str, str]:
    """The variables ``services.env`` exports (what ``source`` would set), for a program to use."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            pairs[key] = shlex.split(value)[0]
    return pairs


# ------------------------------------------------------------------ commands


def run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).split())[-400:]
        raise ServiceError(f"{what} failed ({done.returncode}): {tail}")


def start(services: Services) -> Path:
    start_postgres(services)
    start_mlflow(services)
    write_dagster_yaml(services)
    return write_env_file(services)


def stop(services: Services) -> list[str]:
    stopped = []
    pid = mlflow_pid(services)
    if pid is not None:
        stop_pid(pid, signal.SIGTERM, "the MLflow server", group=True)
        stopped.append(f"MLflow server (pid {pid})")
    services.mlflow_pid_file.unlink(missing_ok=True)
    pid = postgres_pid(services.pg_data)
    if pid is not None:
        stop_pid(pid, signal.SIGINT, "PostgreSQL")  # SIGINT: the server's fast shutdown
        stopped.append(f"PostgreSQL (pid {pid})")
    return stopped


def status(services: Services) -> list[str]:
    pg, ml = postgres_pid(services.pg_data), mlflow_pid(services)
    return [
        f"PostgreSQL 127.0.0.1:{services.pg_port}: " + (f"running (pid {pg})" if pg else "stopped"),
        f"MLflow server {services.mlflow_url}: " + (f"running (pid {ml})" if ml else "stopped"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    problems = settings.validate()
    if problems:
        print(f"error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    settings.offline_environment()
    services = Services.from_settings()
    try:
        if args.command == "start":
            env_file = start(services)
            for line in status(services):
                print(f"services: {line}")
            print(f"services: now `source {env_file}` (Dagster instance: {services.dagster_home})")
        elif args.command == "stop":
            stopped = stop(services)
            print(f"services: stopped {', '.join(stopped)}" if stopped else "services: none was running")
        else:
            for line in status(services):
                print(f"services: {line}")
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
