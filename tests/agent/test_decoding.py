"""Batched decoding with cross-turn KV reuse, on a real tiny model."""

import pytest

from eto_assets.agent.backends import GenerationConfig, TransformersBackend
from eto_assets.agent.decoding import KVStore, SessionDecoder, _Held
from eto_assets.agent.prompt import build_conversation
from eto_assets.data.react import STOP_STRINGS


@pytest.fixture(scope="module")
def backends(sharp_model_dir):
    return TransformersBackend(sharp_model_dir, reuse_kv=False), TransformersBackend(
        sharp_model_dir, max_batch_size=4
    )


def episodes(book, expert_sample):
    """Four real episodes (two task types sharing their preambles) as growing conversations."""
    return [(f"ep{i}", t.task_type, t.messages) for i, t in enumerate(expert_sample)]


def test_reuse_matches_recomputing_every_turn_and_computes_far_fewer_tokens(
    backends, tiny_model_dir, expert_sample
):
    plain, reusing = backends
    _, book = tiny_model_dir
    config = GenerationConfig(max_new_tokens=10)
    fed_plain, fed_reuse = plain.decoder.fed_tokens, reusing.decoder.fed_tokens
    eps = episodes(book, expert_sample)
    turns = min(len(m) for _, _, m in eps) // 2
    for turn in range(1, turns + 1):
        convs = [build_conversation(book, kind, msgs[: 2 * turn - 1]) for _, kind, msgs in eps]
        expected = plain.generate(convs, config)
        got = reusing.generate(convs, config, sessions=[key for key, _, _ in eps])
        assert got == expected, f"turn {turn}"
    fed_plain = plain.decoder.fed_tokens - fed_plain
    fed_reuse = reusing.decoder.fed_tokens - fed_reuse
    assert fed_reuse * 3 < fed_plain, (fed_reuse, fed_plain)
    for key, _, _ in eps:
        reusing.end_session(key)
        assert reusing.decoder.store.get(key) is None


def test_sampling_per_conversation_seed_ignores_batch_order(backends, tiny_model_dir, expert_sample):
    _, reusing = backends
    _, book = tiny_model_dir
    convs = [build_conversation(book, kind, msgs[:1]) for _, kind, msgs in episodes(book, expert_sample)]
    config = GenerationConfig(max_new_tokens=12, temperature=1.0)
    seeds = [11, 22, 33, 44]
    batch = reusing.generate(convs, config, seeds=seeds)
    alone = [reusing.generate([c], config, seeds=[s])[0] for c, s in zip(convs, seeds, strict=True)]
    reversed_batch = reusing.generate(convs[::-1], config, seeds=seeds[::-1])[::-1]
    assert batch == alone == reversed_batch
    other = reusing.generate(convs, config, seeds=[s + 1 for s in seeds])
    assert other != batch  # a different seed samples something else


def test_generation_stops_at_the_first_stop_string(backends):
    plain, _ = backends
    decoder: SessionDecoder = plain.decoder
    text = "Action: look around\nObservation: a kitchen"
    ids = plain.tokenizer(text, add_special_tokens=False)["input_ids"]
    first_stop = next(n for n in range(1, len(ids) + 1) if decoder._hit_stop(ids[:n]))
    text = plain.tokenizer.decode(ids[:first_stop])
    assert any(s in text for s in STOP_STRINGS)
    assert not any(s in plain.tokenizer.decode(ids[: first_stop - 1]) for s in STOP_STRINGS)
    assert text.startswith("Action: look around")


@pytest.mark.parametrize("stop", ["\nObservation:", "\nTask:", "\n---"])  # ETO agents/base.py:14
def test_engine_stops_at_each_eto_stop_string(backends, tiny_model_dir, expert_sample, stop):
    """The real model, steered by a forward hook to write an answer, then ``stop``, then more
    turns: the engine must stop decoding on the token that completes ``stop`` (not run on to
    ``max_new_tokens``), and the backend must hand back the answer without the hallucinated rest."""
    plain, _ = backends
    _, book = tiny_model_dir
    answer = "Thought: the animal may be outside.\nAction: teleport to outside"
    script = f"{answer}{stop} You see a frog.\nAction: focus on frog\nAction: wait"
    ids = plain.tokenizer(script, add_special_tokens=False)["input_ids"]
    assert plain.tokenizer.decode(ids) == script  # real decoded text, not a hand-made string
    first_stop = next(n for n in range(1, len(ids) + 1) if stop in plain.tokenizer.decode(ids[:n]))
    calls: list[int] = []

    def steer(module, args, kwargs, output):
        step = len(calls)
        calls.append(step)
        if step < len(ids):
            output.logits[:, -1, :] = -1e9
            output.logits[:, -1, ids[step]] = 0.0
        return output

    handle = plain.model.register_forward_hook(steer, with_kwargs=True)
    try:
        episode = expert_sample[0]
        conv = build_conversation(book, episode.task_type, episode.messages[:1])
        got = plain.generate([conv], GenerationConfig(max_new_tokens=len(ids) + 8))
    finally:
        handle.remove()
    assert got == [answer]
    assert len(calls) == first_stop < len(ids)  # one prefill plus one step per further token


def test_kv_store_evicts_least_recently_used_past_its_budget():
    import torch

    def held(n):
        return _Held(torch.arange(n), [(torch.zeros(1, n, 4), torch.zeros(1, n, 4))])

    store = KVStore(budget_bytes=held(10).nbytes * 2)
    store.put("a", held(10))
    store.put("b", held(10))
    assert store.get("a") is not None  # "a" is now the most recent
    store.put("c", held(10))
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None
    best, n = store.longest_prefix(torch.arange(6))
    assert n == 6 and best is not None
