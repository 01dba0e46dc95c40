"""ETO explores greedily: the exploration stage decodes every action at the profile's
``rollout.explore_temperature``, 0 (greedy) by default. Checked on the real stage with the real
rollout engine, a real ScienceWorld engine and a real tiny model, by recording the temperature of
every generation request the backend receives."""

import dataclasses

import pytest

from eto_assets import stages
from eto_assets.agent.backends import GenerationConfig, load_backend
from eto_assets.config.profile import RolloutConfig, load_profile
from eto_assets.data.schemas import read_trajectories
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.registry import BenchmarkSources
from eto_assets.stages.policy import PolicyRecord
from tests.conftest import REPO

NANO = str(REPO / "tests" / "fixtures" / "nano.yaml")


class RecordingBackend:
    """The real transformers backend, noting the decoding settings of every request."""

    def __init__(self, path: str, seen: list[GenerationConfig]) -> None:
        self._inner = load_backend("transformers", path, max_batch_size=8)
        self._seen = seen

    def generate(self, conversations, config: GenerationConfig, **kwargs):
        self._seen.append(config)
        return self._inner.generate(conversations, config, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def sampled(run: stages.TaskRun, temperature: float) -> stages.TaskRun:
    """The same run with the profile's exploration temperature set to ``temperature``."""
    rollout = run.profile.rollout.model_copy(update={"explore_temperature": temperature})
    return dataclasses.replace(run, profile=run.profile.model_copy(update={"rollout": rollout}))


@pytest.fixture(scope="module")
def explored(tmp_path_factory):
    """Expert data and the tiny base model (standing in as the policy of iterations 0 and 1),
    then exploration of iteration 1 under the nano profile as it is and of iteration 2 under the
    same profile with ``explore_temperature`` 0.7. Returns the run and, per iteration, the stage
    result and the generation settings the backend received."""
    home = tmp_path_factory.mktemp("explore")
    run = stages.open_task_run("sciworld", load_profile(NANO), BenchmarkSources(home=home))
    out = {}
    with EnvironmentPool() as envs:
        stages.generate_expert_data(run, envs)
        stages.build_base_model(run, "tiny")
        policy = str(run.layout.base_model_dir)
        for iteration, task_run in ((1, run), (2, sampled(run, 0.7))):
            PolicyRecord(policy).write(run.layout, iteration - 1)
            seen: list[GenerationConfig] = []
            result = stages.explore(
                task_run, iteration, lambda path, seen=seen: RecordingBackend(path, seen), envs
            )
            out[iteration] = (result, seen)
    return run, out


def test_exploration_is_greedy_by_default(explored):
    run, out = explored
    result, seen = out[1]
    assert RolloutConfig().explore_temperature == 0.0, "ETO explores greedily"
    assert run.profile.rollout.explore_temperature == 0.0
    assert seen, "exploration generated no action"
    temperatures = sorted({config.temperature for config in seen})
    assert temperatures == [0.0], f"exploration decoded at temperatures {temperatures}, not greedily"
    assert result.params["temperature"] == 0.0
    explored_ids = {t.task_id for t in read_trajectories(run.layout.rollouts_jsonl(1))}
    assert explored_ids == {t.task_id for t in run.tasks("train")}


def test_exploration_uses_the_profiles_temperature(explored):
    """The temperature comes from ``rollout.explore_temperature``, not from a constant."""
    _, out = explored
    result, seen = out[2]
    temperatures = sorted({config.temperature for config in seen})
    assert temperatures == [0.7], f"exploration decoded at {temperatures}, the profile says 0.7"
    assert result.params["temperature"] == 0.7
