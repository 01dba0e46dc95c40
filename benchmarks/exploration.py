"""Exploration throughput: the batched engine vs the one-generation-per-step sequential loop.

Same ScienceWorld episodes, same tiny model, same greedy decoding, run side by side in one
process. Environments are started before timing and reused, so both sides measure episodes, not
JVM start-up. Also measures one ScienceWorld step through our wrapper vs ``ScienceWorldEnv.step``.

    python benchmarks/exploration.py [--episodes 16] [--model PATH]

The last two lines are ``exploration_speedup=<ratio>`` and ``sciworld_step_speedup=<ratio>``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from eto_assets.agent.backends import TransformersBackend  # noqa: E402
from eto_assets.agent.prompt import make_prompt_book, preamble  # noqa: E402
from eto_assets.agent.rollout import RolloutConfig, RolloutStats, run_rollouts  # noqa: E402
from eto_assets.envs.sciworld import SciWorldBenchmark, SciWorldEnv  # noqa: E402
from eto_assets.training.tiny_model import TinyModelSpec, build_tiny_model  # noqa: E402

TASK_TYPES = ["find-animal", "find-plant", "lifespan-longest-lived", "lifespan-shortest-lived"]


class Pool:
    def __init__(self, bench: SciWorldBenchmark, n: int, warm_task) -> None:
        self.free = [bench.make_env() for _ in range(n)]
        for env in self.free:  # a cold JVM's first load and step are slow: warm every engine once
            env.reset(warm_task)
            env.step("look around")

    def acquire(self):
        return self.free.pop()

    def release(self, env) -> None:
        self.free.append(env)

    def close(self) -> None:
        for env in self.free:
            env.close()


def measure(label, tasks, pool, backend, book, concurrency, max_new_tokens, workdir):
    stats = RolloutStats()
    out = Path(workdir) / f"{label}.jsonl"
    started = time.perf_counter()
    trajs = run_rollouts(
        tasks,
        pool.acquire,
        backend,
        book,
        out,
        RolloutConfig(concurrency=concurrency, max_new_tokens=max_new_tokens),
        desc=label,
        stats=stats,
        release_env=pool.release,
    )
    wall = time.perf_counter() - started
    steps = sum(t.metadata["steps"] for t in trajs)
    rate = len(trajs) / wall * 60
    print(
        f"{label:>10}: {len(trajs)} episodes, {steps} steps in {wall:.1f}s = {rate:.1f} episodes/min "
        f"(model {stats.model_seconds:.1f}s, env {stats.env_seconds:.1f}s)"
    )
    return trajs, rate


def step_cost(bench: SciWorldBenchmark, n_tasks: int = 3) -> tuple[float, float]:
    """Seconds per step replaying gold paths: our wrapper vs the stock ``ScienceWorldEnv.step``."""
    env = SciWorldEnv()
    ours = stock = 0.0
    steps = 0
    try:
        for task in bench.tasks("train")[:n_tasks]:
            gold = env.gold_actions(task)
            env.reset(task)
            t0 = time.perf_counter()
            for action in gold:
                env.step(action)
            ours += time.perf_counter() - t0
            engine = env._engine
            engine.load(task.task_type, task.payload["variation"], "easy", generateGoldPath=False)
            engine.reset()
            t0 = time.perf_counter()
            for action in gold:
                engine.step(action)
            stock += time.perf_counter() - t0
            steps += len(gold)
    finally:
        env.close()
    return ours / steps, stock / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--model", help="a checkpoint folder (default: build an untrained tiny model)")
    args = parser.parse_args()

    print(f"cores: {os.cpu_count()}")
    bench = SciWorldBenchmark(TASK_TYPES, max_steps_cap=args.max_steps)
    tasks = bench.tasks("seen")[: args.episodes]
    pool = Pool(bench, min(16, len(tasks)), bench.tasks("train")[0])
    with tempfile.TemporaryDirectory() as workdir:
        expert_env = pool.acquire()
        experts = [bench.expert_trajectory(expert_env, t) for t in bench.tasks("train")[::10]]
        pool.release(expert_env)
        book = make_prompt_book(bench.prompt_spec(), [e for e in experts if e])
        model = args.model
        if model is None:
            texts = [m.content for e in experts if e for m in (*preamble(book, e.task_type), *e.messages)]
            model = build_tiny_model(texts, Path(workdir) / "tiny", TinyModelSpec(vocab_size=2048))
        backend = TransformersBackend(model, max_batch_size=args.episodes)
        seq, seq_rate = measure("sequential", tasks, pool, backend, book, 1, args.max_new_tokens, workdir)
        bat, bat_rate = measure("batched", tasks, pool, backend, book, 16, args.max_new_tokens, workdir)
        same = [t.messages for t in seq] == [t.messages for t in bat]
        print(f"same trajectories (greedy): {same}")
    pool.close()
    ours, stock = step_cost(bench)
    print(f"sciworld step: wrapper {ours * 1000:.1f} ms, ScienceWorldEnv.step {stock * 1000:.1f} ms")
    print(f"exploration_speedup={bat_rate / seq_rate:.2f}")
    print(f"sciworld_step_speedup={stock / ours:.2f}")


if __name__ == "__main__":
    main()
