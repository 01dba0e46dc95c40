"""Every method side by side: SFT, ETO, Best-of-N, RFT, RL and the self-play methods, on the same
held-out tasks, with the wall time each one costs.

Runs a profile (default ``small``: SmolLM2-135M-Instruct on ScienceWorld, see configs/small.yaml)
once per seed through the stage table (``eto_assets/assets/table.py``, no Dagster): every stage of
every selected method, upstream first, in one run, so SFT and ETO share their expert data, base model
and SFT policy with the other methods, as in the asset graph. Each stage is timed; a method's wall
time is the sum of its own stages' (the shared expert, base-model and SFT stages, the untrained
model's evaluation among them, count as ``sft``; the report as nothing). Then one line per method,
mean over seeds, an iterated method by its last iteration (``eto`` is ETO's iteration ``iterations``):

    method=<name> seen=<avg reward> unseen=<avg reward> wall_min=<minutes>

and a Markdown table with the spread over seeds, the untrained model's row and the episodes each
method played (exploration, branches from expert steps and their Monte-Carlo continuations,
evaluation, RL's training episodes; StepAgent's proposed turns beside them; not the expert replays).

    make real-model
    python benchmarks/methods.py --seeds 1 --methods all
    python benchmarks/methods.py --profile tests/fixtures/nano.yaml --base-model tiny   # seconds a stage
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from eto_assets.config import settings

if __name__ == "__main__":  # the entry point, before the imports below load the Hugging Face libraries
    settings.offline_environment()

from _stage_log import StageLog  # noqa: E402

from eto_assets import stages  # noqa: E402
from eto_assets.agent.backends import load_backend  # noqa: E402
from eto_assets.assets.table import REPORT, StageSpec, StageTools, stage_table  # noqa: E402
from eto_assets.config.profile import (  # noqa: E402
    METHODS,
    Profile,
    ProfileError,
    check_profile_for_model,
    load_profile,
)
from eto_assets.envs.pool import EnvironmentPool  # noqa: E402
from eto_assets.envs.registry import BenchmarkSources  # noqa: E402
from eto_assets.models.real_model import real_model_dir  # noqa: E402
from eto_assets.stages.evaluate import EVAL_SPLITS  # noqa: E402
from eto_assets.stages.layout import ETO  # noqa: E402
from eto_assets.stages.methods import ITERATED_METHODS  # noqa: E402
from eto_assets.stages.report import collect_rows  # noqa: E402

SFT = "sft"  # the shared stages' line: expert data, base model (and its evaluation), SFT
BASE = "base"  # the untrained model's row (its evaluation's time counts in sft's)


def seeded(profile: Profile, seed: int) -> Profile:
    """The profile with every seed set to ``seed``: training order and initialisation (SFT, DPO, RL,
    the tiny model), and the per-episode sampling seeds of exploration and the sampling methods."""
    return profile.model_copy(
        update={
            "sft": profile.sft.model_copy(update={"seed": seed}),
            "dpo": profile.dpo.model_copy(update={"seed": seed}),
            "rl": profile.rl.model_copy(update={"seed": seed}),
            "rollout": profile.rollout.model_copy(update={"seed": seed}),
            "tiny_model": profile.tiny_model.model_copy(update={"seed": seed}),
        }
    )


def with_methods(profile: Profile, methods: str) -> Profile:
    """The profile with ``methods`` (a comma list, or ``all``), validated as a profile file's."""
    names = (
        list(METHODS) if methods.strip() == "all" else [m.strip() for m in methods.split(",") if m.strip()]
    )
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ProfileError(f"--methods: unknown {unknown}; known: {', '.join(METHODS)} (or all)")
    try:  # model_validate, not model_copy: the profile's rules (selfplay_rft_eto needs selfplay_rft) hold
        return Profile.model_validate({**profile.model_dump(), "methods": names})
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ProfileError(f"--methods {methods}: {problems}") from None


def bucket(spec: StageSpec) -> str | None:
    """Whose wall time a stage is: its method's, ``sft`` for the shared stages, None for the report."""
    if spec.key == REPORT:
        return None
    if spec.method != ETO:
        return spec.method
    return ETO if spec.iteration > 0 else SFT


def row_name(method: str, iterations: int) -> str:
    """The ``collect_rows`` row of ``method``'s final policy (its last iteration where it iterates)."""
    if method in ITERATED_METHODS:
        return f"eto-{iterations}" if method == ETO else f"{method}-{iterations}"
    return method


def _lines(path: Path) -> int:
    return sum(1 for line in path.open() if line.strip()) if path.is_file() else 0


def episodes_of(spec: StageSpec, run: stages.TaskRun, result: stages.StageResult) -> int:
    """Episodes the stage played with a model: exploration and sampling, branches from expert steps
    and their Monte-Carlo values, evaluation (every sample of Best-of-N), RL's training episodes."""
    metrics = result.metrics
    if "explore_episodes" in metrics:
        return int(metrics["explore_episodes"])
    # the step-level methods' branches and IPR's Monte-Carlo continuations, as played (a branch
    # another method already played with the same policy is taken, not played again)
    for played in ("branch_played", "mc_played"):
        if played in metrics:
            return int(metrics[played])
    if "rl_episodes_played" in metrics:
        return int(metrics["rl_episodes_played"])
    if spec.stage == "eval" or spec.stage.endswith("_eval"):
        folder = run.layout.for_method(spec.method)
        return sum(_lines(folder.eval_jsonl(spec.iteration, split)) for split in EVAL_SPLITS)
    return 0


@dataclass
class SeedResult:
    rewards: dict[str, dict[str, float]] = field(default_factory=dict)  # row name -> metrics
    wall_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # line -> seconds
    episodes: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # line -> episodes
    proposals: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # StepAgent's single turns


def one_seed(
    profile: Profile, task: str, base_model: str, home: Path, dtype: str, log: StageLog
) -> SeedResult:
    """Every stage the profile selects, in the table's order (upstream first), in ``home``."""
    data_dir = settings.read_path("ETO_DATA_DIR")
    threads = settings.torch_threads()  # as the pipeline's inference resource: the rest for environments
    open_backend = lambda path: load_backend("transformers", path, dtype=dtype, threads=threads)  # noqa: E731
    iterations = profile.iterations_for(task)
    run = stages.open_task_run(task, profile, BenchmarkSources(home=home, data_dir=data_dir))
    out = SeedResult()
    stage_walls: dict[tuple[str, int], float] = defaultdict(float)  # what the report's wall column reads
    with EnvironmentPool() as envs:
        tools = StageTools(base_model, None, open_backend, envs, wall_seconds=lambda: dict(stage_walls))
        for spec in stage_table(iterations):
            if spec.skipped(profile, task):
                continue
            result = log(spec.key, lambda spec=spec: spec.run(run, tools))
            seconds = log.peaks[-1].wall_s
            stage_walls[spec.method, spec.iteration] += seconds
            line = bucket(spec)
            if line is not None:
                out.wall_s[line] += seconds
                out.episodes[line] += episodes_of(spec, run, result)
                out.proposals[line] += int(result.metrics.get("proposals", 0))
    for row in collect_rows(run.layout, iterations, stage_walls, profile.methods):
        out.rewards[row.method] = row.metrics
    return out


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def report(results: list[SeedResult], profile: Profile, task: str) -> None:
    iterations = profile.iterations_for(task)
    lines = [SFT, *profile.methods]
    rows = {line: row_name(line, iterations) for line in lines}
    rows[BASE] = BASE

    def reward(line: str, split: str) -> list[float]:
        return [r.rewards[rows[line]].get(f"eval_{split}_avg_reward", 0.0) for r in results]

    def present(line: str) -> bool:
        return all(rows[line] in r.rewards for r in results)

    for line in lines:
        if not present(line):
            print(f"method={line} seen=- unseen=- wall_min=- (no evaluation of {rows[line]})")
            continue
        seen, unseen = (statistics.fmean(reward(line, s)) for s in EVAL_SPLITS)
        wall = statistics.fmean(r.wall_s[line] for r in results) / 60
        print(f"method={line} seen={seen:.4f} unseen={unseen:.4f} wall_min={wall:.2f}")
    print()
    header = " | ".join(f"{s} avg reward" for s in EVAL_SPLITS)
    print(f"| method | policy | {header} | wall min | episodes |")
    print("|---|---|" + "---|" * len(EVAL_SPLITS) + "---|---|")
    for line in ([BASE] if present(BASE) else []) + lines:
        if not present(line):
            continue
        cells = " | ".join(spread(reward(line, s)) for s in EVAL_SPLITS)
        if line == BASE:
            wall, episodes = "(in sft)", "(in sft)"
        else:
            wall = spread([r.wall_s[line] / 60 for r in results])
            episodes = f"{statistics.fmean(r.episodes[line] for r in results):.0f}"
            proposals = statistics.fmean(r.proposals[line] for r in results)
            if proposals:
                episodes += f" + {proposals:.0f} proposed turns"
        print(f"| {line} | {rows[line]} | {cells} | {wall} | {episodes} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="small", help="a profile name (configs/) or a YAML file")
    parser.add_argument("--task", default="sciworld")
    parser.add_argument(
        "--base-model",
        default=str(real_model_dir()),
        help="'tiny' or a Hugging Face folder (default: SmolLM2 where `make real-model` puts it)",
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1, one whole run each")
    parser.add_argument("--methods", default="all", help=f"a comma list of {', '.join(METHODS)}, or all")
    parser.add_argument("--dtype", default=settings.inference_dtype(), help="the inference weights' dtype")
    parser.add_argument("--home", type=Path, default=None, help="keep every seed's artifacts here")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    try:
        profile = with_methods(load_profile(args.profile), args.methods)
        check_profile_for_model(profile, args.base_model)
    except ProfileError as exc:
        parser.error(str(exc))
    if args.base_model != "tiny" and not Path(args.base_model).is_dir():
        parser.error(f"--base-model {args.base_model}: no such folder (make real-model builds SmolLM2)")
    home = args.home or Path(tempfile.mkdtemp(prefix="eto-methods-"))
    results: list[SeedResult] = []
    log = StageLog(width=48)
    began = time.perf_counter()
    try:
        for seed in range(args.seeds):
            started = time.perf_counter()
            print(f"seed {seed}:", flush=True)
            results.append(
                one_seed(
                    seeded(profile, seed), args.task, args.base_model, home / f"seed-{seed}", args.dtype, log
                )
            )
            print(f"seed {seed}: {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    print(f"\n{args.task}, profile {profile.name}, base model {args.base_model}, {args.seeds} seed(s)")
    print(f"methods: {', '.join(profile.methods)}\n")
    report(results, profile, args.task)
    print(f"\npeak_rss_gb={max(p.process_gb for p in log.peaks):.2f}")
    print(f"peak_rss_environments_gb={max(p.children_gb for p in log.peaks):.2f}")
    print(f"wall_min={(time.perf_counter() - began) / 60:.1f}")


if __name__ == "__main__":
    main()
