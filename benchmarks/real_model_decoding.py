"""Decoding throughput on the real model: our ``TransformersBackend`` (batched, cross-turn KV reuse)
against transformers' own ``model.generate`` (batched, left padding), side by side in one run.

Same model object, same threads and dtype, same prompts, greedy, same ``max_new_tokens``, and the
same stops (end of turn or a stop string; ``generate`` gets them as ``stop_strings``). The prompts
are what exploration sends: real ScienceWorld episodes (1-shot preamble, then the expert's turns)
at turns 1..T, one batch per turn. ``generate`` recomputes every prompt each turn, as a request per
step does; the backend keeps each episode's keys/values between its turns and computes the shared
preamble once. A single cold batch (turn 1 only, nothing held) is measured too.

    python benchmarks/real_model_decoding.py [--episodes 8] [--turns 3] [--max-new-tokens 32]

Prints the tokens/s of each side and ``decode_speedup_real=<ratio>`` (multi-turn, ours/theirs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eto_assets.config.settings import offline_environment  # noqa: E402

if __name__ == "__main__":  # the entry point, before the imports below load the Hugging Face libraries
    offline_environment()

from _real_model_setup import hf_generate, real_model, sciworld_prompts_by_turn  # noqa: E402

from eto_assets.agent.backends import GenerationConfig, TransformersBackend, set_torch_threads  # noqa: E402
from eto_assets.agent.decoding import KVStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", help="a model folder (default: the converted SmolLM2)")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    set_torch_threads(args.threads)
    print(f"cores: {os.cpu_count()}, torch threads {args.threads}, dtype {args.dtype}")
    turns, env = sciworld_prompts_by_turn(args.episodes, args.turns)
    env.close()
    backend = TransformersBackend(real_model(args.model), max_batch_size=args.episodes, dtype=args.dtype)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)
    sessions = [f"ep{i}" for i in range(args.episodes)]
    backend.generate(turns[0][:1], GenerationConfig(max_new_tokens=2))  # first-call overheads
    backend.decoder.store = KVStore(backend.decoder.store.budget_bytes)  # nothing held

    ours_s = theirs_s = 0.0
    ours_n = theirs_n = 0
    same = total = 0
    cold: dict[str, float] = {}
    for t, convs in enumerate(turns, start=1):
        # ours first on turn 1 with nothing held: that is also the cold single-batch measurement
        before, t0 = backend.decoder.generated_tokens, time.perf_counter()
        mine = backend.generate(convs, config, sessions=sessions)
        seconds, n = time.perf_counter() - t0, backend.decoder.generated_tokens - before
        ours_s, ours_n = ours_s + seconds, ours_n + n
        t0 = time.perf_counter()
        theirs, m = hf_generate(backend, convs, args.max_new_tokens)
        their_seconds = time.perf_counter() - t0
        theirs_s, theirs_n = theirs_s + their_seconds, theirs_n + m
        if t == 1:
            cold = {"ours": n / seconds, "theirs": m / their_seconds}
        same += sum(a == b for a, b in zip(mine, theirs, strict=True))
        total += len(convs)
        mean_prompt = sum(len(backend._encode(c)) for c in convs) // len(convs)
        print(
            f"turn {t}: {len(convs)} prompts, mean {mean_prompt}"
            f" tokens | ours {n} tokens in {seconds:.1f}s | model.generate {m} tokens in {their_seconds:.1f}s"
        )
    ours, theirs = ours_n / ours_s, theirs_n / theirs_s
    print(f"same answers: {same}/{total}")
    print(
        f"cold single batch (turn 1, nothing held): ours {cold['ours']:.1f} tokens/s, "
        f"model.generate {cold['theirs']:.1f} tokens/s, {cold['ours'] / cold['theirs']:.2f}x"
    )
    print(f"ours_tokens_per_s={ours:.1f}")
    print(f"generate_tokens_per_s={theirs:.1f}")
    print(f"decode_speedup_real={ours / theirs:.2f}")


if __name__ == "__main__":
    main()
