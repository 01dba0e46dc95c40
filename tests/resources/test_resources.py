"""The resources: settings from one table of environment variables, a checked backend choice, the
MLflow store under ETO_HOME, and an environment pool whose lifetime is the run's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import build_resources
from pydantic import ValidationError

from eto_assets.config import settings as env
from eto_assets.envs.processes import RemoteEnv
from resources import EnvironmentsResource, EtoSettings, InferenceResource, MlflowTracking
from tests.conftest import REPO


def test_settings_default_to_the_environment_at_load(tmp_path):
    assert EtoSettings().home == env.read("ETO_HOME") and EtoSettings().profile == env.read("ETO_PROFILE")
    s = EtoSettings(home=str(tmp_path), profile="micro")
    assert s.home_path() == tmp_path.resolve() and s.load_profile().name == "micro"
    assert s.layout("sciworld").root == tmp_path.resolve() / "artifacts" / "sciworld"


def test_launchpad_shows_every_setting_with_its_value():
    from eto_assets.definitions import defs

    schema = defs.resolve_job_def("eto_job").run_config_schema.config_type
    resources = schema.fields["resources"].config_type
    for name, fields in [
        ("settings", ["home", "profile", "base_model", "data_dir", "accelerate_config"]),
        ("inference", ["backend"]),
        ("envs", ["env_processes", "sciworld_jvms"]),
    ]:
        config = resources.fields[name].config_type.fields["config"].config_type.fields
        for field in fields:
            assert config[field].default_provided, f"{name}.{field} has no default in the launchpad"
    settings = resources.fields["settings"].config_type.fields["config"].config_type.fields
    assert settings["profile"].default_value == env.read("ETO_PROFILE")


def test_every_setting_has_one_default_and_help():
    assert env.read("ETO_ITERATIONS", {}) == "2" and env.iterations({}) == 2
    assert env.read("ETO_BACKEND", {"ETO_BACKEND": ""}) == "transformers"  # empty = unset
    assert all(s.help for s in env.SETTINGS.values())


@pytest.mark.parametrize(
    ("name", "value", "reader"),
    [
        ("ETO_ITERATIONS", "two", env.iterations),
        ("ETO_ITERATIONS", "11", env.iterations),
        ("ETO_SCIWORLD_JVMS", "many", env.sciworld_jvms),
        ("ETO_ENV_PROCESSES", "-1", env.env_processes),
        ("ETO_MODEL_CACHE", __file__, env.model_cache_dir),
        ("OPENAI_BASE_URL", "localhost:8000", env.openai_base_url),
        ("OPENAI_API_KEY", "sk-pasted\n", env.openai_api_key),
        ("DAGSTER_HOME", __file__, lambda environ: env.dagster_home(Path("/h"), environ)),
    ],
)
def test_bad_environment_values_name_the_variable(name, value, reader):
    with pytest.raises(env.SettingError, match=name) as caught:
        reader({name: value})
    assert len(str(caught.value).splitlines()) == 1
    if env.SETTINGS[name].secret:
        assert value.strip() not in str(caught.value)  # a key is never shown, not even a bad one


def test_folder_and_endpoint_readers(tmp_path):
    assert env.dagster_home(tmp_path, {}) == tmp_path.resolve() / "dagster"
    assert env.dagster_home(tmp_path, {"DAGSTER_HOME": ""}) == tmp_path.resolve() / "dagster"  # empty = unset
    assert env.dagster_home(Path("rel"), {}) == Path("rel").resolve() / "dagster"
    assert env.dagster_home(tmp_path, {"DAGSTER_HOME": str(tmp_path / "d")}) == tmp_path.resolve() / "d"
    assert env.dagster_home(tmp_path, {"DAGSTER_HOME": "~/d"}) == Path.home().resolve() / "d"
    assert env.model_cache_dir({}) == Path.home() / ".cache" / "eto" / "models"
    assert env.model_cache_dir({"ETO_MODEL_CACHE": str(tmp_path)}) == tmp_path.resolve()
    assert env.openai_base_url({}) == "https://api.openai.com/v1"
    assert env.openai_base_url({"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"}) == "http://127.0.0.1:8000/v1"
    assert env.openai_api_key({}) == "EMPTY" and env.openai_api_key({"OPENAI_API_KEY": "sk-x"}) == "sk-x"
    assert [s.env for s in env.SETTINGS.values() if s.secret] == ["OPENAI_API_KEY"]


def test_preflight_uses_the_backends_list_and_model_folder_check(tmp_path):
    from eto_assets.agent import backends
    from resources import preflight

    assert preflight.BACKENDS is backends.BACKENDS
    assert preflight.check_backend("openai") is None
    assert "(ETO_BACKEND / --backend)" in preflight.check_backend("tgi")
    missing = preflight.check_base_model(str(tmp_path / "no-model"))
    assert "does not exist (ETO_BASE_MODEL / --base-model)" in missing and "no-model" in missing
    assert "has no config.json (ETO_BASE_MODEL / --base-model)" in preflight.check_base_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert preflight.check_base_model(str(tmp_path)) is None
    assert backends.check_model_dir(tmp_path) == tmp_path  # what the preflight accepts, the backends load
    assert preflight.check_base_model("tiny") is None


def test_preflight_stays_cheap():
    """The preflight runs before anything heavy: the backends module it uses must not pull torch,
    transformers, vllm or openai when imported (they are imported where a backend is made)."""
    probe = (
        "import json, sys; import eto_assets.agent.backends; "
        "print(json.dumps([m for m in ('torch', 'transformers', 'vllm', 'openai') if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []


def test_unknown_backend_is_rejected_when_configured():
    with pytest.raises(ValidationError, match="'tgi' is not one of"):
        InferenceResource(backend="tgi")


def test_mlflow_store_defaults_to_sqlite_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert MlflowTracking().resolved_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert MlflowTracking(tracking_uri="http://mlflow:5000").resolved_uri(tmp_path) == "http://mlflow:5000"


def test_stage_run_tags_and_links(tmp_path):
    """The resource holds the settings; the asset layer's tracking module opens runs and links them."""
    from eto_assets.assets import tracking as mlflow_records

    tracking = MlflowTracking(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", ui_url="http://ui:5000/")
    uri = tracking.resolved_uri(tmp_path)
    root = tracking.artifact_root(tmp_path)
    with mlflow_records.stage_run(uri, "sciworld", "sft", 0, artifact_root=root, params={"a": 1}) as run:
        link = mlflow_records.run_url(uri, run, tracking.ui_url)
    runs = f"http://ui:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert link == f"{runs}?workflowType=machine_learning"  # the training view, not GenAI
    from mlflow.tracking import MlflowClient

    stored = MlflowClient(uri).get_run(run.info.run_id)
    assert stored.info.run_name == "sciworld-it0-sft" and stored.data.params == {"a": "1"}
    assert stored.data.tags["eto.stage"] == "sft" and stored.data.tags["eto.iteration"] == "0"


@pytest.fixture(scope="module")
def webshop_bench(tmp_path_factory):
    from eto_assets.envs.webshop.benchmark import WebShopBenchmark
    from eto_assets.envs.webshop.generator import generate_catalog

    return WebShopBenchmark(data_dir=generate_catalog(tmp_path_factory.mktemp("catalog")), num_test=2)


def test_environment_pool_lives_as_long_as_the_run(webshop_bench):
    with build_resources({"envs": EnvironmentsResource(env_processes=1)}) as res:
        pool = res.envs.pool
        env = pool.acquire(webshop_bench, rollouts=True)
        assert isinstance(env, RemoteEnv)
        pool.release(webshop_bench, env, rollouts=True)
        # keyed by the benchmark's configuration: an equal benchmark gets the same warm environment
        again = type(webshop_bench)(**webshop_bench_args(webshop_bench))
        assert again.key == webshop_bench.key and pool.acquire(again, rollouts=True) is env
        pool.release(again, env, rollouts=True)
        worker = next(iter(pool._workers.values()))._workers[0].process
    assert not worker.is_alive()  # torn down with the run
    with pytest.raises(RuntimeError, match="closed"):
        pool.acquire(webshop_bench)


def webshop_bench_args(bench) -> dict:
    return {"data_dir": bench.data_dir, "num_train": bench.num_train, "num_test": bench.num_test}
