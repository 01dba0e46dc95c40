"""The batched engine on the real ScienceWorld engine with a real tiny model."""

import json

import pytest

from eto_assets.agent.backends import GenerationConfig, ModelPathError, TransformersBackend
from eto_assets.agent.rollout import RolloutStats, load_finished, run_rollouts
from eto_assets.config.profile import RolloutConfig


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    path, _ = tiny_model_dir
    return TransformersBackend(path, max_batch_size=8)


def tasks(bench, n=3):
    return bench.tasks("seen")[:n]


@pytest.mark.parametrize("batch_fraction", [1.0, 0.5])
def test_batched_equals_sequential_for_greedy(
    sciworld_small, tiny_model_dir, sharp_model_dir, tmp_path, batch_fraction
):
    """The engine (batched, KV reused across turns, model and env overlapping) plays exactly the
    episodes of the one-request-per-step loop that recomputes every prompt."""
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    cfg = dict(max_new_tokens=12)
    seq = run_rollouts(
        tasks(bench),
        bench.make_env,
        TransformersBackend(sharp_model_dir, max_batch_size=1, reuse_kv=False),
        book,
        tmp_path / "seq.jsonl",
        RolloutConfig(concurrency=1, batch_fraction=1.0, **cfg),
    )
    bat = run_rollouts(
        tasks(bench),
        bench.make_env,
        TransformersBackend(sharp_model_dir, max_batch_size=3),
        book,
        tmp_path / "bat.jsonl",
        RolloutConfig(concurrency=3, batch_fraction=batch_fraction, **cfg),
    )
    assert [t.messages for t in seq] == [t.messages for t in bat]
    assert [t.reward for t in seq] == [t.reward for t in bat]
    assert all(t.num_steps == t.metadata["steps"] for t in bat)


def test_bad_batch_fraction_is_named():
    with pytest.raises(ValueError, match="batch_fraction"):
        RolloutConfig(batch_fraction=0)


def test_resume_skips_finished_and_never_duplicates(sciworld_small, tiny_model_dir, backend, tmp_path):
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    out = tmp_path / "rollouts.jsonl"
    config = RolloutConfig(concurrency=2, max_new_tokens=8)
    first = run_rollouts(tasks(bench, 1), bench.make_env, backend, book, out, config)
    with out.open("a") as fh:
        fh.write('{"task_id": "torn')  # an append cut short by a crash
    stats = RolloutStats()
    full = run_rollouts(tasks(bench, 3), bench.make_env, backend, book, out, config, stats=stats)
    assert stats.resumed == 1 and stats.episodes == 2
    assert full[0].messages == first[0].messages
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["task_id"] for r in lines) == sorted(t.task_id for t in tasks(bench, 3))
    assert len(load_finished(out)) == 3


def test_step_limit_and_invalid_format_steps_count(sciworld_small, tiny_model_dir, backend, tmp_path):
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    [traj] = run_rollouts(
        tasks(bench, 1),
        bench.make_env,
        backend,
        book,
        tmp_path / "r.jsonl",
        RolloutConfig(concurrency=1, max_new_tokens=4),
    )
    assert traj.metadata["steps"] <= tasks(bench, 1)[0].max_steps
    assert traj.messages[-1].role == "assistant"
    assert 0.0 <= traj.reward <= 1.0


def test_stop_strings_cut_generation(backend):
    conv = [{"role": "user", "content": "Your task is x"}]
    [text] = backend.generate([conv], GenerationConfig(max_new_tokens=16))
    assert "Observation" not in text


def test_context_overflow_returns_none(backend):
    long = [{"role": "user", "content": "look around " * 5000}]
    assert backend.generate([long], GenerationConfig(max_new_tokens=4)) == [None]


def test_bad_model_path_is_named(tmp_path):
    with pytest.raises(ModelPathError, match="no config.json"):
        TransformersBackend(tmp_path)
    with pytest.raises(ModelPathError, match="is not a directory"):
        TransformersBackend(tmp_path / "missing")
