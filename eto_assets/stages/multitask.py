"""One policy for several benchmarks (multi-task ETO): SFT on the union of their expert data, then
ETO's iterations with exploration and pairs per benchmark and one DPO on the union of the pairs.

Each benchmark keeps its own prompts: the union's prompt book is a :class:`PromptBooks` that renders
a record with its benchmark's book. The union's files live in ``artifacts/multitask`` (expert data,
base model, checkpoints, pairs); each benchmark's side in its own ``artifacts/<task>/multitask``
folder, as a method of that task: the shared policy's ``policy.json``, exploration, pairs and
evaluation there, so each task's report shows ``multitask-k`` beside its per-task policies. Every
stage below is one of ETO's stage functions run unchanged on those folders, except the union's SFT
and DPO.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eto_assets.agent.backends import check_model_dir
from eto_assets.agent.prompt import PromptBook, PromptBooks, tokenizer_corpus
from eto_assets.config.profile import Profile
from eto_assets.data.schemas import read_pairs, read_trajectories, write_jsonl
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.registry import BenchmarkSources
from eto_assets.stages.dpo import train_dpo_policy
from eto_assets.stages.evaluate import evaluate
from eto_assets.stages.expert import generate_expert_data
from eto_assets.stages.explore import OpenBackend, explore
from eto_assets.stages.layout import MULTITASK, ArtifactLayout
from eto_assets.stages.pairs import make_pairs
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.result import StageResult
from eto_assets.stages.sft import TINY
from eto_assets.stages.task import TaskRun, open_task_run
from eto_assets.training.launch import plan_training, train


@dataclass(frozen=True)
class MultiTaskRun:
    """The benchmarks' runs (each in its ``multitask`` folder) and the union's folder."""

    runs: dict[str, TaskRun]
    layout: ArtifactLayout
    profile: Profile

    @property
    def iterations(self) -> int:
        return self.profile.iterations


def open_multitask_run(tasks: list[str], profile: Profile, sources: BenchmarkSources) -> MultiTaskRun:
    if len(set(tasks)) < 2:
        raise ValueError(f"multi-task training needs at least two benchmarks, got {tasks}")
    runs = {task: open_task_run(task, profile, sources).for_method(MULTITASK) for task in tasks}
    return MultiTaskRun(runs, ArtifactLayout(sources.home, MULTITASK), profile)


def union_expert_data(mt: MultiTaskRun, envs: EnvironmentPool) -> StageResult:
    """Each benchmark's expert data (made by its own expert stage where it is missing, the same
    files its per-task graph uses), then their union and the books of all of them."""
    experts = []
    types: dict[str, set[str]] = {}
    books: dict[str, PromptBook] = {}
    counts: dict[str, float] = {}
    for task, run in mt.runs.items():
        if not run.layout.expert_jsonl.is_file():
            generate_expert_data(run, envs)
        own = read_trajectories(run.layout.expert_jsonl)
        experts.extend(own)
        types[task] = {t.task_type for t in own}
        counts[f"experts_{task}"] = len(own)
        book = PromptBook.read(run.layout.prompt_book)
        if not isinstance(book, PromptBook):
            raise TypeError(f"{run.layout.prompt_book}: a task's prompt book holds one benchmark's prompts")
        books[task] = book
    layout = mt.layout
    write_jsonl(layout.expert_jsonl, experts)
    PromptBooks.of(books, types).write(layout.prompt_book)
    return StageResult(
        metrics=counts,
        metadata={"experts": len(experts), "path": layout.expert_jsonl},
    )


def build_multitask_base_model(mt: MultiTaskRun, base_model: str) -> Path:
    """The model SFT starts from: the tiny model with a tokenizer learnt on every benchmark's text, or
    the user's folder, checked."""
    layout = mt.layout
    if base_model != TINY:
        path = check_model_dir(base_model, "base_model setting")
    else:
        from eto_assets.training.tiny_model import build_tiny_model

        path = layout.base_model_dir
        corpus = tokenizer_corpus(PromptBook.read(layout.prompt_book), read_trajectories(layout.expert_jsonl))
        build_tiny_model(corpus, path, mt.profile.tiny_model)
    return path


def _share(mt: MultiTaskRun, policy: PolicyRecord, iteration: int) -> None:
    """The union's policy of ``iteration`` is each benchmark's ``multitask`` policy of it."""
    policy.write(mt.layout, iteration)
    for run in mt.runs.values():
        policy.write(run.layout, iteration)


def train_multitask_sft(mt: MultiTaskRun, base: Path, accelerate_config: str | None = None) -> StageResult:
    layout = mt.layout
    spec = plan_training(
        "sft",
        str(base),
        str(layout.expert_jsonl),
        str(layout.prompt_book),
        layout.checkpoints_dir(0),
        mt.profile.sft,
    )
    result = train(spec, accelerate_config)
    policy = PolicyRecord(spec.output_dir)
    _share(mt, policy, 0)
    return StageResult(
        metrics={f"sft_{k}": v for k, v in result.metrics.items()},
        params={"base_model_path": str(base), "tasks": ",".join(mt.runs)},
        history=result.log_history,
        history_prefix="sft",
        policy=policy,
        register_policy=True,
        metadata={"examples": result.num_examples, "path": Path(spec.output_dir)},
    )


def train_multitask_dpo(
    mt: MultiTaskRun, iteration: int, accelerate_config: str | None = None
) -> StageResult:
    """DPO on the union of every benchmark's pairs of ``iteration`` (each made by ETO's rule against
    its own expert), from the union's policy of the iteration before, also the reference."""
    pairs = [p for run in mt.runs.values() for p in read_pairs(run.layout.pairs_jsonl(iteration))]
    write_jsonl(mt.layout.pairs_jsonl(iteration), pairs)
    union = TaskRun(MULTITASK, mt.profile, mt.layout, next(iter(mt.runs.values())).benchmark)
    result = train_dpo_policy(union, iteration, accelerate_config)
    _share(mt, PolicyRecord.read(mt.layout, iteration), iteration)
    return result


# how a caller wraps each stage: (benchmark or "multitask", stage, iteration, the work) -> its result
StageLogger = Callable[[str, str, int, Callable[[], StageResult]], StageResult]


def run_multitask(
    mt: MultiTaskRun,
    base_model: str,
    open_backend: OpenBackend,
    envs: EnvironmentPool,
    accelerate_config: str | None = None,
    log: StageLogger = lambda task, stage, iteration, work: work(),
) -> None:
    """Every stage, upstream first; ``log`` wraps each to time, print or record it. The union's
    stages are named for ``multitask``, the others for their benchmark; every stage is ``multitask_*``."""
    log(MULTITASK, "multitask_expert", 0, lambda: union_expert_data(mt, envs))
    base = build_multitask_base_model(mt, base_model)
    log(MULTITASK, "multitask_sft", 0, lambda: train_multitask_sft(mt, base, accelerate_config))
    for task, run in mt.runs.items():
        log(task, "multitask_eval", 0, lambda run=run: evaluate(run, 0, open_backend, envs))
    for k in range(1, mt.iterations + 1):
        for task, run in mt.runs.items():
            log(task, "multitask_explore", k, lambda run=run, k=k: explore(run, k, open_backend, envs))
            log(task, "multitask_pairs", k, lambda run=run, k=k: make_pairs(run, k))
        log(MULTITASK, "multitask_dpo", k, lambda k=k: train_multitask_dpo(mt, k, accelerate_config))
        for task, run in mt.runs.items():
            log(task, "multitask_eval", k, lambda run=run, k=k: evaluate(run, k, open_backend, envs))
