"""A prompt that overflows the model's context (``rollout.context_overflow``), on the real ScienceWorld
engine with the real tiny model.

ETO's FastChat worker cuts the oldest prompt tokens (``fastchat/serve/inference.py``
``generate_stream``: ``max_src_len = context_len - max_new_tokens - 1``,
``input_ids = input_ids[-max_src_len:]``) and the episode goes on. The default,
``cut_oldest_rounds``, also goes on, but keeps the instruction, ``OK``, the in-context example and
the task turn and leaves out the fewest oldest (action, observation) rounds; the stored episode stays
whole. ``end_episode`` is the project's earlier rule (``ended_by`` "context_limit").

The context is made small with the transformers backend's ``max_context``: long enough for the first
three prompts of a reference episode and half a round, so the fourth overflows.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from openai import BadRequestError

from eto_assets.agent.backends import GenerationConfig, OpenAIBackend, TransformersBackend
from eto_assets.agent.decoding import common_prefix
from eto_assets.agent.prompt import build_conversation, episode_rounds, preamble
from eto_assets.agent.rollout import RolloutStats, load_finished, rollout_fingerprint, run_rollouts
from eto_assets.config.profile import RolloutConfig

MAX_NEW = 8
FIT_STEPS = 3  # prompts of the reference episode that fit the small context


class _Recorder:
    """A backend that notes every conversation it is asked about and the answer it gave."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[tuple[list[dict], str | None]] = []

    def generate(self, conversations, config, **kwargs):
        answers = self.inner.generate(conversations, config, **kwargs)
        self.calls.extend(zip(conversations, answers, strict=True))
        return answers

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _play(model_dir, book, bench, task, out, *, max_context=None, reuse_kv=True, **rollout):
    backend = _Recorder(TransformersBackend(model_dir, max_context=max_context, reuse_kv=reuse_kv))
    stats = RolloutStats()
    config = RolloutConfig(concurrency=1, max_new_tokens=MAX_NEW, **rollout)
    [traj] = run_rollouts([task], bench.make_env, backend, book, out, config, stats=stats)
    return traj, backend, stats


@pytest.fixture(scope="module")
def reference(sciworld_small, tiny_model_dir, sharp_model_dir, tmp_path_factory):
    """The sharp model's greedy episode with the model's full context, and the small context."""
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    task = bench.tasks("seen")[0]
    out = tmp_path_factory.mktemp("reference") / "r.jsonl"
    traj, backend, _ = _play(sharp_model_dir, book, bench, task, out)
    assert traj.metadata["ended_by"] == "max_steps" and traj.metadata["steps"] == task.max_steps > FIT_STEPS
    sizes = [backend.prompt_tokens(conv) for conv, _ in backend.calls]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)  # every round makes it longer
    # room for the third prompt and half a round more: the fourth prompt overflows by half a round
    max_context = sizes[FIT_STEPS - 1] + MAX_NEW + (sizes[FIT_STEPS] - sizes[FIT_STEPS - 1]) // 2
    return task, traj, max_context, sizes


def _check_prompts(book, saved, calls, backend, max_context) -> list[int]:
    """Every prompt sent is the preamble, the task turn and the newest rounds of the episode so far,
    leaving out as few oldest rounds as fit ``max_context``; returns the rounds left out per turn."""
    head = build_conversation(book, saved.task_type, saved.messages[:1])  # instruction, OK, example, task
    assert [answer.strip() for _, answer in calls] == [m.content for m in saved.messages[1::2]]
    cuts = []
    for step, (conv, _) in enumerate(calls):
        episode = saved.messages[: 2 * step + 1]  # the task and the rounds played before this turn
        assert conv[: len(head)] == head, f"step {step}: instruction, OK, example or task turn lost"
        rounds = (len(conv) - len(head)) // 2
        left_out = episode_rounds(episode) - rounds
        assert conv == build_conversation(book, saved.task_type, episode, left_out), f"step {step}"
        assert backend.prompt_tokens(conv) + MAX_NEW <= max_context, f"step {step} overflows"
        if left_out:
            fewer = build_conversation(book, saved.task_type, episode, left_out - 1)
            assert backend.prompt_tokens(fewer) + MAX_NEW > max_context, f"step {step} cut too much"
            assert conv[-2:] == build_conversation(book, saved.task_type, episode)[-2:]  # newest round
        cuts.append(left_out)
    return cuts


def test_default_cuts_the_oldest_rounds_and_plays_to_the_step_limit(
    sciworld_small, tiny_model_dir, sharp_model_dir, reference, tmp_path
):
    """Past the context the episode goes on to its step limit; each prompt keeps the instruction,
    example and task and the newest rounds, leaving out as few oldest rounds as fit; the stored
    episode is whole."""
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    task, full, max_context, _ = reference
    assert RolloutConfig().context_overflow == "cut_oldest_rounds"
    out = tmp_path / "r.jsonl"
    traj, backend, stats = _play(sharp_model_dir, book, bench, task, out, max_context=max_context)
    assert traj.metadata["ended_by"] == "max_steps", traj.metadata
    assert traj.metadata["steps"] == task.max_steps
    [saved] = load_finished(out).values()
    assert saved.messages == traj.messages and len(saved.messages) == 2 * task.max_steps  # whole
    assert [m.role for m in saved.messages] == ["user", "assistant"] * task.max_steps
    assert saved.messages[0] == full.messages[0]
    assert saved.messages[: 2 * FIT_STEPS] == full.messages[: 2 * FIT_STEPS]  # the same until it overflows
    cuts = _check_prompts(book, saved, backend.calls, backend, max_context)
    assert cuts[:FIT_STEPS] == [0] * FIT_STEPS and all(cuts[FIT_STEPS:])
    assert cuts[FIT_STEPS] == 1  # half a round over: one round left out, not more
    cut = task.max_steps - FIT_STEPS
    assert saved.metadata["cut_turns"] == cut and saved.metadata["cut_rounds"] == cuts[-1]
    assert (stats.cut_turns, stats.cut_episodes) == (cut, 1)


def test_cut_prompts_play_the_same_with_and_without_kv_reuse(
    sciworld_small, tiny_model_dir, sharp_model_dir, reference, tmp_path
):
    """A cut prompt is no prefix-extension of the session's earlier one: the engine must recompute
    past the shared part, not reuse stale keys. The sharp model's answers depend on every detail,
    so the episode played with KV reuse equals the one that recomputes every prompt."""
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    task, _, max_context, _ = reference
    reused, _, _ = _play(sharp_model_dir, book, bench, task, tmp_path / "a.jsonl", max_context=max_context)
    fresh, _, _ = _play(
        sharp_model_dir, book, bench, task, tmp_path / "b.jsonl", max_context=max_context, reuse_kv=False
    )
    assert reused.metadata["cut_turns"] > 0
    assert reused.messages == fresh.messages


def test_end_episode_ends_at_the_context_limit(
    sciworld_small, tiny_model_dir, sharp_model_dir, reference, tmp_path
):
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    task, full, max_context, _ = reference
    traj, backend, stats = _play(
        sharp_model_dir,
        book,
        bench,
        task,
        tmp_path / "r.jsonl",
        max_context=max_context,
        context_overflow="end_episode",
    )
    assert traj.metadata["ended_by"] == "context_limit"
    assert traj.metadata["steps"] == FIT_STEPS and traj.messages == full.messages[: 2 * FIT_STEPS]
    assert traj.metadata["cut_turns"] == 0 and stats.cut_turns == 0
    assert backend.calls[-1][1] is None  # the whole episode was sent, and did not fit


def test_a_task_that_alone_overflows_ends_the_episode(
    sciworld_small, tiny_model_dir, sharp_model_dir, reference, tmp_path
):
    """Nothing to cut: the preamble and the task turn alone do not fit."""
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    task, _, _, sizes = reference
    out = tmp_path / "r.jsonl"
    traj, backend, _ = _play(sharp_model_dir, book, bench, task, out, max_context=sizes[0] + MAX_NEW - 1)
    assert traj.metadata["ended_by"] == "context_limit" and traj.metadata["steps"] == 0
    assert backend.calls == []  # ended before asking the model


def test_greedy_answer_to_a_cut_prompt_equals_a_fresh_decode(sharp_model_dir, tiny_model_dir, expert_sample):
    """The session decoder holds each session's keys/values from its earlier, uncut prompt; the next
    prompt of a session leaves one or two oldest rounds out, so it is no prefix-extension of what is
    held. The decoder reuses only the common prefix (preamble and task), recomputes the rest, and
    decodes what a decoder with no cache decodes; in the same batch one session grows uncut."""
    _, book = tiny_model_dir
    reusing = TransformersBackend(sharp_model_dir)
    plain = TransformersBackend(sharp_model_dir, reuse_kv=False)
    config = GenerationConfig(max_new_tokens=12)
    trajs = [t for t in expert_sample if episode_rounds(t.messages) >= 3]
    assert len(trajs) >= 2
    sessions = [f"s{i}" for i in range(len(trajs))]
    # turn 1: every session with two rounds
    before = [build_conversation(book, t.task_type, t.messages[:5]) for t in trajs]
    reusing.generate(before, config, sessions=sessions)
    held = [reusing.decoder.store.get(key).ids for key in sessions]
    # turn 2: one round on, the first session uncut, the others with 1 or 2 oldest rounds left out
    cuts = [0, *(1 + i % 2 for i in range(1, len(trajs)))]
    after = [
        build_conversation(book, t.task_type, t.messages[:7], c) for t, c in zip(trajs, cuts, strict=True)
    ]
    ids = [torch.tensor(reusing._encode(conv)) for conv in after]
    cached = [min(common_prefix(h, i), len(i) - 1) for h, i in zip(held, ids, strict=True)]
    for t, conv, old, c, i, n, h in zip(trajs, after, before, cuts, ids, cached, held, strict=True):
        head = len(preamble(book, t.task_type)) + 1  # instruction, OK, example, task
        assert conv[:head] == old[:head]
        if c:  # a cut prompt: the held tail is stale from the first round on
            assert conv[head:] != old[head : len(conv)] and n < len(h) and 0 < n < len(i) - 1
    fed = reusing.decoder.fed_tokens
    got = reusing.generate(after, config, sessions=sessions)
    assert got == plain.generate(after, config)
    assert got == [plain.generate([conv], config)[0] for conv in after]
    # only the prefix that still holds was reused: everything past it was recomputed
    assert reusing.decoder.fed_tokens - fed == sum(len(i) - n for i, n in zip(ids, cached, strict=True))


def test_rule_is_part_of_the_resume_fingerprint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    prints = {
        rule: rollout_fingerprint(
            tmp_path, RolloutConfig(context_overflow=rule), temperature=0.0, max_steps=None
        )
        for rule in ("cut_oldest_rounds", "end_episode")
    }
    assert prints["cut_oldest_rounds"] != prints["end_episode"]


# What servers answer to a prompt past the context: vLLM's OpenAI server (HTTP 400, an "error" object
# whose code is the status) and OpenAI's API (its error code names the cause).
VLLM_REFUSAL = {
    "object": "error",
    "message": "This model's maximum context length is 64 tokens. However, you requested 70 tokens "
    "in the messages, Please reduce the length of the messages.",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
OPENAI_REFUSAL = {
    "error": {
        "message": "Your input exceeds the context window of this model.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
OTHER_REFUSAL = {"error": {"message": "Unknown model m", "type": "invalid_request_error", "code": None}}


@contextlib.contextmanager
def chat_server(reply: Callable[[list[dict]], tuple[int, dict] | None]) -> Iterator[OpenAIBackend]:
    """An OpenAI backend against a local chat-completions endpoint: ``reply(messages)`` gives the
    status and body of each request, or None for a chat completion that plays "look around"."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server hook's name
            messages = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"]
            status, body = reply(messages) or (200, _completion("Action: look around"))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = OpenAIBackend("m", base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="sk-x")
    try:
        yield backend
    finally:
        backend.close()
        server.shutdown()
        server.server_close()


def _completion(content: str) -> dict:
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}


def test_openai_backend_answers_none_to_a_context_refusal():
    conv = [{"role": "user", "content": "Task Description:\nYour task is x"}]
    for refusal in (VLLM_REFUSAL, OPENAI_REFUSAL):
        with chat_server(lambda _, refusal=refusal: (400, refusal)) as backend:
            assert backend.prompt_tokens(conv) is None and backend.max_context is None  # cannot count
            assert backend.generate([conv], GenerationConfig(8)) == [None]
    with chat_server(lambda _: (400, OTHER_REFUSAL)) as backend, pytest.raises(BadRequestError):
        backend.generate([conv], GenerationConfig(8))  # any other refusal is an error


def test_openai_backend_gets_its_prompt_cut_after_the_server_refuses_it(
    sciworld_small, tiny_model_dir, reference, tmp_path
):
    """The ``openai`` backend cannot count tokens: a server that refuses a prompt for its context
    length (as ``vllm serve`` does: HTTP 400, "maximum context length") makes the backend answer
    None, and the engine asks again with one more round left out; the episode goes on."""
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    task, *_ = reference
    head = len(preamble(book, task.task_type)) + 1
    most = head + 2 * 2  # the server takes the preamble, the task and two rounds
    seen: list[list[dict]] = []

    def reply(messages):
        seen.append(messages)
        return (400, VLLM_REFUSAL) if len(messages) > most else None

    stats = RolloutStats()
    with chat_server(reply) as backend:
        [traj] = run_rollouts(
            [task],
            bench.make_env,
            backend,
            book,
            tmp_path / "r.jsonl",
            RolloutConfig(concurrency=1, max_new_tokens=MAX_NEW),
            stats=stats,
        )
    assert traj.metadata["ended_by"] == "max_steps" and traj.metadata["steps"] == task.max_steps
    assert len(traj.messages) == 2 * task.max_steps
    assert traj.metadata["cut_turns"] == task.max_steps - 3 == stats.cut_turns  # steps 3 and 4
    answered = [m for m in seen if len(m) <= most]
    assert len(answered) == task.max_steps
    for step, messages in enumerate(answered):
        episode = traj.messages[: 2 * step + 1]
        kept = (len(messages) - head) // 2
        expected = build_conversation(book, task.task_type, episode, episode_rounds(episode) - kept)
        assert messages == expected and kept == min(step, 2)
