"""The batched engine on the real ScienceWorld engine with a real tiny model."""

import json

import pytest

from eto_assets.agent.backends import GenerationConfig, ModelPathError, TransformersBackend
from eto_assets.agent.rollout import RolloutStats, load_finished, run_rollouts
from eto_assets.config.profile import RolloutConfig
from eto_assets.data.react import truncate_at_stop


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


class _Recorder:
    """A backend that notes every request and the answer the real backend gave."""

    def __init__(self, inner: TransformersBackend) -> None:
        self.inner = inner
        self.calls: list[tuple[list, GenerationConfig, list[str | None]]] = []

    def generate(self, conversations, config, **kwargs):
        answers = self.inner.generate(conversations, config, **kwargs)
        self.calls.extend(
            (conv, config, [answer]) for conv, answer in zip(conversations, answers, strict=True)
        )
        return answers

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _greedy_answer(model, tok, conversation, max_new_tokens: int) -> str:
    """The argmax continuation, decoded independently of the engine by Hugging Face's generate."""
    import torch

    text = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id,
        )
    return truncate_at_stop(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_temperature_zero_plays_the_argmax_action(
    sciworld_small, tiny_model_dir, sharp_model_dir, tmp_path, temperature
):
    """At temperature 0 (ETO's exploration and evaluation) every action the engine plays is the
    model's argmax continuation; at temperature 1 some are not, so the check can tell them apart."""
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    recorder = _Recorder(TransformersBackend(sharp_model_dir, max_batch_size=3))
    config = RolloutConfig(concurrency=3, max_new_tokens=12, seed=7)
    played = run_rollouts(
        tasks(bench), bench.make_env, recorder, book, tmp_path / "r.jsonl", config, temperature=temperature
    )
    actions = [m.content for t in played for m in t.messages if m.role == "assistant"]
    assert sorted(actions) == sorted(a.strip() for _, _, [a] in recorder.calls if a is not None)
    tok, model = recorder.inner.tokenizer, recorder.inner.model
    greedy = [
        answer == _greedy_answer(model, tok, conv, config.max_new_tokens)
        for conv, _, [answer] in recorder.calls
    ]
    if temperature == 0.0:
        assert all(greedy), (
            f"{greedy.count(False)} of {len(greedy)} actions at temperature 0 were not the argmax"
        )
    else:
        assert not all(greedy), (
            "sampling at temperature 1 gave the argmax every time: the check proves nothing"
        )
    asked = {c.temperature for _, c, _ in recorder.calls}
    assert asked == {temperature}, f"the engine asked the backend for temperature {asked}, not {temperature}"
