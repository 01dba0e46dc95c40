"""Stage 1, expert data: the SFT trajectories of every train task, and the splits and prompt book.

``expert.source`` in the profile says where the trajectories come from: ``generated`` replays the
benchmark's expert through the real engine (failed replays are dropped); a path reads a file in
ETO's SFT layout (ETO's released data, or our own export), keeping each record's id, WebShop's
reward and ALFWorld's game_file, and matches every record to a task of the train split (an id no
task has is a bad record). Either way every trajectory is checked (user first, alternating, agent
last, no empty turn) before SFT sees it; ``expert.on_bad_record`` says whether a bad one fails the
stage (one error listing them all) or is skipped and counted. The kept trajectories are also
exported in ETO's SFT layout (``expert_trajectories.eto.json``), which imports back losslessly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from eto_assets.agent.prompt import PromptBook, eto_prompt_book, make_prompt_book
from eto_assets.data.eto_format import (
    EtoFormatError,
    EtoSftRecord,
    RecordProblem,
    match_records,
    read_eto_sft,
    record_to_trajectory,
    sft_records,
    write_json,
)
from eto_assets.data.files import atomic_write_json
from eto_assets.data.schemas import Trajectory, write_jsonl
from eto_assets.data.validation import check_conversation
from eto_assets.envs.base import SPLITS, Benchmark, Environment, TaskInstance
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.stages.result import DatasetInput, StageResult
from eto_assets.stages.task import TaskRun

GENERATED = "generated"
COMPARABLE_TAG = "eto.comparable_with_paper"
# ETO's ALFWorld train set (json_2.1.1 train games after `make data BENCH=alfworld`).
ALFWORLD_FULL_TRAIN = 3321


class NoExpertData(RuntimeError):
    """The expert solved none of the train tasks (or every imported record was bad): nothing to train on."""


def play_experts(
    benchmark: Benchmark, tasks: Sequence[TaskInstance], env: Environment
) -> tuple[list[Trajectory], list[str]]:
    """Expert trajectories that reach success, and the ids of the tasks whose replay failed."""
    kept: list[Trajectory] = []
    dropped: list[str] = []
    for task in tqdm(tasks, desc=f"{benchmark.name} expert", unit="task", mininterval=2.0):
        traj = benchmark.expert_trajectory(env, task)
        if traj is None:
            dropped.append(task.task_id)
        else:
            kept.append(traj)
    return kept, dropped


# --------------------------------------------------------------------------- import


def record_resolver(run: TaskRun, train: Sequence[TaskInstance]) -> Callable[[str], str | None]:
    """A record's key (see :func:`eto_record_key`) -> our train task id, or None when no train task
    of the benchmark has it. Our own ids (an export of ours) resolve as they are; ETO's ids resolve
    per benchmark: ScienceWorld ``"<n>_<variation>"`` through ETO's ``taskname2id.json``, WebShop's
    goal index to ``train/<index>``, ALFWorld's game path to ``train/<task>/<trial>``."""
    ids = {t.task_id for t in train}
    eto_ids: dict[str, str] = {}
    if run.task == "sciworld":
        from eto_assets.envs.eto_splits import EtoSplitsNotFound, load_sciworld_eto_splits

        try:
            eto_ids = load_sciworld_eto_splits(getattr(run.benchmark, "data_dir", None)).record_resolver()
        except EtoSplitsNotFound:
            eto_ids = {}

    def resolve(key: str) -> str | None:
        for candidate in (key, eto_ids.get(key), f"train/{key}"):
            if candidate in ids:
                return candidate
        return None

    return resolve


def import_experts(
    run: TaskRun, path: Path, train: Sequence[TaskInstance]
) -> tuple[list[Trajectory], list[EtoSftRecord], list[RecordProblem], int]:
    """Trajectories of an ETO-layout SFT file, matched to the benchmark's train tasks; also the
    records, the bad records' problems (when skipping) and how many records fall outside the
    profile's scope (a known task the profile does not run: not an error)."""
    policy = run.profile.expert.on_bad_record
    records, report = read_eto_sft(path, policy)
    all_train = run.benchmark.tasks("train")  # unscoped: the scope only selects, it does not define ids
    matched, match_report = match_records(
        records, record_resolver(run, all_train), benchmark=run.task, path=path, on_bad_record=policy
    )
    by_id = {t.task_id: t for t in train}
    trajectories: list[Trajectory] = []
    kept: list[EtoSftRecord] = []
    outside = 0
    for record, task_id in matched:
        task = by_id.get(task_id)
        if task is None:
            outside += 1
            continue
        traj = record_to_trajectory(record, task_id=task_id, task_type=task.task_type, split="train")
        traj.source = "expert"
        traj.metadata["imported_from"] = str(path)
        trajectories.append(traj)
        kept.append(record)
    return trajectories, kept, [*report.problems, *match_report.problems], outside


def check_experts(
    trajectories: Sequence[Trajectory], on_bad_record: str, path: Path
) -> tuple[list[Trajectory], list[RecordProblem]]:
    """Every trajectory checked before SFT (user first, alternating, agent last, no empty turn)."""
    kept: list[Trajectory] = []
    problems: list[RecordProblem] = []
    for i, traj in enumerate(trajectories):
        bad = check_conversation(traj.messages)
        if bad:
            problems += [RecordProblem(i, traj.task_id, "messages", str(p)) for p in bad]
        else:
            kept.append(traj)
    if problems and on_bad_record == "fail":
        raise EtoFormatError(path, problems, len(trajectories))
    return kept, problems


# --------------------------------------------------------------------------- comparability


def comparability(run: TaskRun, generated: bool) -> list[str]:
    """Why this run's numbers are not comparable with the paper's table (empty: they are)."""
    reasons: list[str] = []
    if generated:
        reasons.append("generated expert trajectories (ETO trains on its released SFT data)")
    scope = run.scope
    if scope.task_types or scope.train_per_type or scope.eval_per_type or scope.max_steps_cap:
        reasons.append("the profile runs a subset of the benchmark (task types, tasks per type or step cap)")
    if run.task == "sciworld" and getattr(run.benchmark, "split_source", "eto") != "eto":
        reasons.append("ScienceWorld splits sampled from the engine, not ETO's lists")
    if run.task == "webshop" and not getattr(run.benchmark, "comparable_with_paper", False):
        reasons.append(
            "WebShop without the upstream catalog, ETO's splits and spaCy (e.g. generated catalog)"
        )
    if run.task == "alfworld":
        present = len(run.benchmark.tasks("train"))
        if present < ALFWORLD_FULL_TRAIN:
            reasons.append(f"partial ALFWorld train set ({present} of {ALFWORLD_FULL_TRAIN} games)")
    return reasons


def comparability_tag(reasons: Sequence[str]) -> str:
    return "true" if not reasons else "false: " + "; ".join(reasons)


def comparability_path(run_or_layout) -> Path:
    layout = getattr(run_or_layout, "layout", run_or_layout)
    return layout.expert_dir / "comparability.json"


# --------------------------------------------------------------------------- the stage


def prompt_book_for(
    run: TaskRun, experts: Sequence[Trajectory], instruction: str | None = None
) -> PromptBook:
    """The run's prompts: ETO's files when ``prompt.eto_prompt_dir`` is set; else the imported
    records' instruction (when given) or the benchmark's, with the shortest expert trajectory per
    type as the example; laid out as ``prompt.layout`` says."""
    config = run.profile.prompt
    if config.eto_prompt_dir:
        return eto_prompt_book(Path(config.eto_prompt_dir), run.task, config.layout)
    book = make_prompt_book(run.benchmark.prompt_spec(), experts, config.layout)
    if instruction:
        book = PromptBook(instruction, book.examples, config.layout)
    return book


def generate_expert_data(run: TaskRun, envs: EnvironmentPool) -> StageResult:
    layout = run.layout
    splits = {split: run.tasks(split) for split in SPLITS}
    atomic_write_json(layout.splits_json, {s: [t.task_id for t in ts] for s, ts in splits.items()})
    config = run.profile.expert
    generated = config.source == GENERATED
    dropped: list[str] = []
    problems: list[RecordProblem] = []
    outside = 0
    instruction = None
    if generated:
        source_path = layout.expert_jsonl
        env = envs.acquire(run.benchmark)
        try:
            experts, dropped = play_experts(run.benchmark, splits["train"], env)
        finally:
            envs.release(run.benchmark, env)
    else:
        source_path = Path(config.source).expanduser()
        experts, records, problems, outside = import_experts(run, source_path, splits["train"])
        instructions = Counter(r.instruction for r in records)
        instruction = instructions.most_common(1)[0][0] if instructions else None
    experts, invalid = check_experts(experts, config.on_bad_record, source_path)
    problems += invalid
    if not experts:
        raise NoExpertData(
            f"{run.task}: no expert trajectory for any of the {len(splits['train'])} train tasks "
            f"(source: {config.source})"
        )
    write_jsonl(layout.expert_jsonl, experts)
    book = prompt_book_for(run, experts, instruction)
    book.write(layout.prompt_book)
    game_files = {t.task_id: str(t.payload["game_file"]) for t in splits["train"] if "game_file" in t.payload}
    eto_json = write_json(
        layout.expert_jsonl.with_suffix(".eto.json"),
        sft_records(experts, book.instruction, game_files=game_files),
    )
    reasons = comparability(run, generated)
    atomic_write_json(comparability_path(run), {"reasons": reasons})
    warnings = []
    if problems:
        warnings.append(f"{run.task}: skipped {len({p.index for p in problems})} bad expert records")
    return StageResult(
        metrics={
            "expert_count": len(experts),
            "expert_dropped": len(dropped),
            "expert_bad_records": len({(p.index, p.record_id) for p in problems}),
            "expert_avg_reward": sum(t.reward for t in experts) / len(experts),
        },
        params={
            "train_tasks": len(splits["train"]),
            "expert_source": config.source,
            "prompt_layout": book.layout,
        },
        tags={COMPARABLE_TAG: comparability_tag(reasons)},
        datasets=[DatasetInput(layout.splits_json, f"{run.task}-splits", "splits")],
        artifacts=[
            (p, "expert") for p in (layout.expert_jsonl, eto_json, layout.prompt_book, layout.splits_json)
        ],
        metadata={
            "dropped_tasks": dropped[:50],
            "bad_records": [p.describe() for p in problems[:50]],
            "records_outside_scope": outside,
            "split_sizes": {s: len(ts) for s, ts in splits.items()},
            "split_source": getattr(run.benchmark, "split_source", "benchmark"),
            "example_task_types": sorted(book.examples),
            "comparable_with_paper": comparability_tag(reasons),
            "path": layout.expert_jsonl,
        },
        warnings=warnings,
    )
