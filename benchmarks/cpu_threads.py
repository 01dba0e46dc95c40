"""Torch threads and dtype for CPU inference, measured: tokens/s of ``TransformersBackend.generate``
with the real model (SmolLM2-135M-Instruct) on real ScienceWorld prompts, at each thread count and
dtype, alone and while a ScienceWorld JVM steps gold paths in a thread (as during exploration). The
JVM's steps/s are printed too: threads the model takes are cores the environment loses.

    python benchmarks/cpu_threads.py [--threads 1 2] [--dtypes float32 bfloat16] [--batch 8]

Configurations are interleaved over ``--repeats`` rounds (the machine may be shared), and the best
round of each is reported. One line per configuration:
``threads=<n> dtype=<d> jvm=<off|on> tokens_per_s=<x> jvm_steps_per_s=<y>``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eto_assets.config.settings import offline_environment  # noqa: E402

if __name__ == "__main__":  # the entry point, before the imports below load the Hugging Face libraries
    offline_environment()

from _real_model_setup import JvmStepper, real_model, sciworld_prompts  # noqa: E402

from eto_assets.agent.backends import (  # noqa: E402
    GenerationConfig,
    TransformersBackend,
    cpu_supports_bf16,
    set_torch_threads,
)


def tokens_per_second(backend: TransformersBackend, convs, config: GenerationConfig) -> float:
    before = backend.decoder.generated_tokens
    t0 = time.perf_counter()
    backend.generate(convs, config)
    return (backend.decoder.generated_tokens - before) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", help="a model folder (default: the converted SmolLM2)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    print(f"cores: {os.cpu_count()}, cpu bf16: {cpu_supports_bf16()}, batch {args.batch}")
    convs, bench, env = sciworld_prompts(args.batch)
    stepper = JvmStepper(bench, env)
    with stepper:
        time.sleep(5)
    print(f"jvm alone: {stepper.rate:.1f} steps/s")
    model = real_model(args.model)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)
    backends = {d: TransformersBackend(model, max_batch_size=args.batch, dtype=d) for d in args.dtypes}
    # warm-up; holds the shared 1-shot preamble, as exploration does
    answers = {d: backend.generate(convs, config) for d, backend in backends.items()}
    for d in args.dtypes[1:]:
        same = sum(a == b for a, b in zip(answers[d], answers[args.dtypes[0]], strict=True))
        print(f"{d} answers equal to {args.dtypes[0]}'s: {same}/{len(convs)}")
    prompt_tokens = sum(len(backends[args.dtypes[0]]._encode(c)) for c in convs) // len(convs)
    print(f"mean prompt {prompt_tokens} tokens, max_new_tokens {args.max_new_tokens}")
    best: dict[tuple, tuple[float, float]] = {}
    configs = list(itertools.product(args.threads, args.dtypes, (False, True)))
    for round_ in range(args.repeats):
        for threads, dtype, jvm in configs if round_ % 2 == 0 else configs[::-1]:
            set_torch_threads(threads)
            if jvm:
                with stepper:
                    rate = tokens_per_second(backends[dtype], convs, config)
                steps = stepper.rate
            else:
                rate, steps = tokens_per_second(backends[dtype], convs, config), 0.0
            key = (threads, dtype, jvm)
            if rate > best.get(key, (0.0, 0.0))[0]:
                best[key] = (rate, steps)
    for (threads, dtype, jvm), (rate, steps) in sorted(best.items()):
        print(
            f"threads={threads} dtype={dtype} jvm={'on' if jvm else 'off'} tokens_per_s={rate:.1f} "
            f"jvm_steps_per_s={steps:.1f}"
        )
    env.close()


if __name__ == "__main__":
    main()
