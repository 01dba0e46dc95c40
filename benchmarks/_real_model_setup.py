"""Shared set-up of the real-model benchmarks: SmolLM2-135M-Instruct, real ScienceWorld prompts
(1-shot preamble plus an episode's first turns, replayed on the engine), and a thread that keeps a
ScienceWorld JVM stepping gold paths, as exploration does while the model runs.

A helper, not an entry point: the benchmark scripts that import it call
``eto_assets.config.settings.offline_environment()`` first; importing it changes no environment.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from eto_assets.agent.backends import Conversation, GenerationConfig, TransformersBackend, fits
from eto_assets.agent.prompt import PromptBook, build_conversation, make_prompt_book
from eto_assets.data.react import STOP_STRINGS, truncate_at_stop
from eto_assets.envs.sciworld import SciWorldBenchmark, SciWorldEnv

TASK_TYPES = ["find-animal", "lifespan-longest-lived"]


def real_model(path: str | None) -> Path:
    """``path``, else the converted SmolLM2 where ``make real-model`` puts it (converted on first use)."""
    if path:
        return Path(path)
    from eto_assets.models.real_model import ensure_real_model

    return ensure_real_model()  # under ETO_HOME, read through the settings table


def _experts(n: int):
    bench = SciWorldBenchmark(TASK_TYPES, max_steps_cap=10)
    env = bench.make_env()
    per_type = max(2, n)  # more than needed: short episodes are left out when turns are asked for
    tasks = [
        t for kind in TASK_TYPES for t in [t for t in bench.tasks("train") if t.task_type == kind][:per_type]
    ]
    experts = [e for e in (bench.expert_trajectory(env, t) for t in tasks) if e]
    book: PromptBook = make_prompt_book(bench.prompt_spec(), experts)
    return experts, book, bench, env


def sciworld_prompts(
    n: int, turn: int = 2
) -> tuple[list[list[dict[str, str]]], SciWorldBenchmark, SciWorldEnv]:
    """``n`` real prompts: expert episodes of two task types cut after their ``turn``-th observation."""
    experts, book, bench, env = _experts(n)
    convs = [build_conversation(book, e.task_type, e.messages[: 2 * turn - 1]) for e in experts]
    return (convs * (n // len(convs) + 1))[:n], bench, env


def sciworld_prompts_by_turn(n: int, turns: int) -> tuple[list[list[list[dict[str, str]]]], SciWorldEnv]:
    """Per turn 1..``turns``, the prompts of ``n`` real episodes at that turn (episodes long enough)."""
    experts, book, _, env = _experts(n)
    long_enough = [e for e in experts if len(e.messages) >= 2 * turns - 1][:n]
    if len(long_enough) < n:
        raise SystemExit(f"only {len(long_enough)} expert episodes have {turns} turns; ask for fewer")
    by_turn = [
        [build_conversation(book, e.task_type, e.messages[: 2 * t - 1]) for e in long_enough]
        for t in range(1, turns + 1)
    ]
    return by_turn, env


class JvmStepper:
    """Replays gold paths on a ScienceWorld engine in a thread until stopped; counts steps."""

    def __init__(self, bench: SciWorldBenchmark, env: SciWorldEnv) -> None:
        self.env = env
        self.tasks = [(t, env.gold_actions(t)) for t in bench.tasks("train")[:6]]
        self.steps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            for task, gold in self.tasks:
                self.env.reset(task)
                for action in gold:
                    if self._stop.is_set():
                        return
                    self.steps += 1
                    if self.env.step(action).done:
                        break

    def __enter__(self) -> JvmStepper:
        self.steps = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.5)  # let it reach its stride
        self.steps, self.started = 0, time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.rate = self.steps / (time.perf_counter() - self.started)
        self._stop.set()
        assert self._thread is not None
        self._thread.join()


def hf_generate(backend: TransformersBackend, convs, max_new_tokens: int) -> tuple[list[str], int]:
    """``model.generate`` on the batch, left padded, greedy, with the stop strings; returns texts and
    generated tokens (end token and padding excluded, as the backend counts them)."""
    import torch

    tok, model = backend.tokenizer, backend.model
    ids = [backend._encode(c) for c in convs]
    width = max(len(i) for i in ids)
    pad = tok.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            stop_strings=list(STOP_STRINGS),
            tokenizer=tok,
            pad_token_id=pad,
        )
    eos = set(backend.decoder.eos_ids) | {pad}
    texts, count = [], 0
    for row in out[:, width:].tolist():
        end = next((j for j, t in enumerate(row) if t in eos), len(row))
        count += end
        texts.append(truncate_at_stop(tok.decode(row[:end], skip_special_tokens=True)))
    return texts, count


class GenerateBackend(TransformersBackend):
    """transformers' own ``model.generate`` behind the backend interface: the waiting prompts of a
    step batched (left padding), every prompt computed from scratch each turn, greedy only."""

    def generate(
        self, conversations: list[Conversation], config: GenerationConfig, *, seeds=None, sessions=None
    ) -> list[str | None]:
        assert config.temperature == 0, "the model.generate baseline is greedy only"
        fitting = [
            i
            for i, c in enumerate(conversations)
            if fits(self.prompt_tokens(c), config.max_new_tokens, self.max_context)
        ]
        results: list[str | None] = [None] * len(conversations)
        for start in range(0, len(fitting), self.max_batch_size):
            chunk = fitting[start : start + self.max_batch_size]
            texts, _ = hf_generate(self, [conversations[i] for i in chunk], config.max_new_tokens)
            for i, text in zip(chunk, texts, strict=True):
                results[i] = text
        return results
