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
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from eto_assets.agent.prompt import PromptBook, eto_prompt_book, make_prompt_book
from eto_assets.data.eto_format import (
    EtoFormatError,
    EtoSftRecord,
    ReadReport,
    RecordProblem,
    Resolution,
    read_and_match_sft,
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

HELD_OUT = "held out for evaluation: training on it would train on the evaluation"


def _held_out(what: str, split: str) -> Resolution:
    return Resolution("held_out", reason=f"{what} is in the {split} split, {HELD_OUT}")


def _unknown(key: str, why: str) -> Resolution:
    return Resolution("unknown", reason=f"unknown task id {key!r}: {why}")


# ScienceWorld's variation counts per engine task name, asked of the engine once per process.
_SCIWORLD_VARIATIONS: dict[str, int] = {}


class _SciWorldVariations:
    """How many variations each ScienceWorld task has, asked of the real engine on first need.

    The split lists only say which variations ETO uses; whether a variation exists at all is the
    engine's to say (``find-animal`` has 300, ETO lists 140), so an id is called unknown only when
    the engine has no such variation. The JVM is borrowed from the process's shared hosts.
    """

    def __init__(self) -> None:
        self._hosts = None
        self._host = None

    def count(self, task_name: str) -> int:
        if task_name not in _SCIWORLD_VARIATIONS:
            if self._host is None:
                from eto_assets.envs.sciworld import shared_hosts

                self._hosts = shared_hosts()
                self._host = self._hosts.acquire()
            with self._host.lock:
                _SCIWORLD_VARIATIONS[task_name] = int(self._host.engine.get_max_variations(task_name))
        return _SCIWORLD_VARIATIONS[task_name]

    def close(self) -> None:
        if self._host is not None and self._hosts is not None:
            self._hosts.release(self._host)
        self._host = self._hosts = None


def _sciworld_resolver(run: TaskRun, engine: _SciWorldVariations) -> Callable[[str], Resolution]:
    """ETO's ``"<n>_<variation>"`` (``n`` from ``taskname2id.json``) or our ``"<task>/<variation>"``.

    Train list first (ETO keeps 54 items that are in both train and dev, and trains on them), then
    ETO's dev and test lists (our seen / unseen: refused), then the engine (outside the list: kept).
    """
    from eto_assets.envs.eto_splits import (
        ENGINE_TASK_NAMES,
        EtoSplitsNotFound,
        engine_task_name,
        load_sciworld_eto_splits,
    )
    from eto_assets.envs.sciworld import compute_splits

    names: dict[int, str] = {}
    try:
        eto = load_sciworld_eto_splits(getattr(run.benchmark, "data_dir", None))
        names = {number: eto_name for eto_name, number in eto.taskname2id.items()}
        lists = {s: {(i.task_name, i.variation) for i in eto.split(s)} for s in ("train", "dev", "test")}
        split_names = {"dev": "ETO dev (our 'seen')", "test": "ETO test (our 'unseen')"}
    except EtoSplitsNotFound:  # the engine-sampled fallback splits
        sampled = compute_splits().as_dict()
        lists = {
            theirs: {(t, v) for t, vs in sampled[ours].items() for v in vs}
            for theirs, ours in (("train", "train"), ("dev", "seen"), ("test", "unseen"))
        }
        split_names = {"dev": "sampled dev ('seen')", "test": "sampled test ('unseen')"}

    def resolve(key: str) -> Resolution:
        if "/" in key:  # our own id (an export of ours)
            task_name, _, raw_variation = key.rpartition("/")
        else:
            raw_number, sep, raw_variation = key.partition("_")
            if not sep or not raw_number.isdigit():
                return _unknown(key, "not a ScienceWorld id ('<n>_<variation>' or '<task>/<variation>')")
            if int(raw_number) not in names:
                return _unknown(
                    key, f"no ScienceWorld task has number {raw_number} in ETO's taskname2id.json"
                )
            try:
                task_name = engine_task_name(names[int(raw_number)])
            except ValueError as exc:
                return _unknown(key, str(exc))
        if task_name not in ENGINE_TASK_NAMES:
            return _unknown(key, f"the ScienceWorld engine has no task {task_name!r}")
        if not raw_variation.isdigit():
            return _unknown(key, f"variation {raw_variation!r} is not a number")
        variation = int(raw_variation)
        item, task_id = (task_name, variation), f"{task_name}/{variation}"
        if item in lists["train"]:
            return Resolution("train", task_id, task_name)
        for split in ("dev", "test"):
            if item in lists[split]:
                return _held_out(f"ScienceWorld task {task_id}", split_names[split])
        available = engine.count(task_name)
        if variation >= available:
            return _unknown(key, f"ScienceWorld task {task_name!r} has variations 0-{available - 1} only")
        return Resolution("outside", task_id, task_name)

    return resolve


def _alfworld_resolver(run: TaskRun) -> Callable[[str], Resolution]:
    """``<split dir>/<task dir>/<trial dir>`` of the record's game file, looked up on disk.

    ETO's ALFWorld train list is every playable train game of its six types (what
    :func:`list_games` returns); a train game on disk that it leaves out is outside the list; a game
    under valid_seen / valid_unseen is held out.
    """
    from eto_assets.envs.alfworld.benchmark import GAME_FILE, SPLIT_DIRS, TASK_TYPES, list_games

    root = Path(run.benchmark.root)  # type: ignore[attr-defined]
    listed = {f"train/{g.parent.parent.name}/{g.parent.name}": t for t, g in list_games(root, "train")}
    dirs = {**{v: k for k, v in SPLIT_DIRS.items()}, **{k: k for k in SPLIT_DIRS}}

    def resolve(key: str) -> Resolution:
        split_dir, task_dir, trial = key.split("/")[-3:]
        ours = dirs.get(split_dir)
        if ours is None:
            return _unknown(key, f"{split_dir!r} is not an ALFWorld split ({', '.join(SPLIT_DIRS.values())})")
        game = root / "json_2.1.1" / SPLIT_DIRS[ours] / task_dir / trial / GAME_FILE
        if not game.is_file():
            return _unknown(key, f"no ALFWorld game {game}")
        if ours != "train":
            return _held_out(f"ALFWorld game {key}", f"{SPLIT_DIRS[ours]} (our {ours!r})")
        task_id = f"train/{task_dir}/{trial}"
        if task_id in listed:
            return Resolution("train", task_id, listed[task_id])
        family = task_dir.split("-", 1)[0]
        return Resolution("outside", task_id, TASK_TYPES.get(family, family))

    return resolve


def _webshop_resolver(run: TaskRun) -> Callable[[str], Resolution]:
    """A goal index (ETO's id) or our ``"<split>/<index>"``, judged on the split lists before
    subsampling (a test goal a small profile does not sample is still a test goal)."""
    from eto_assets.envs.webshop.benchmark import TASK_TYPE

    bench = run.benchmark
    goals = len(bench.world.catalog.goals)  # type: ignore[attr-defined]
    splits = {s: set(ids) for s, ids in bench.split_indices.items()}  # type: ignore[attr-defined]
    names = {"seen": "held-out dev slice of the train goals ('seen')", "unseen": "test ('unseen')"}

    def resolve(key: str) -> Resolution:
        raw = key.rpartition("/")[2].strip()
        if not raw.lstrip("-").isdigit():
            return _unknown(key, "not a WebShop goal index")
        index = int(raw)
        if not 0 <= index < goals:
            return _unknown(key, f"no WebShop goal {index} (the catalog has goals 0-{goals - 1})")
        task_id = f"train/{index}"
        if index in splits["train"]:
            return Resolution("train", task_id, TASK_TYPE)
        for split in ("seen", "unseen"):
            if index in splits[split]:
                return _held_out(f"WebShop goal {index}", names[split])
        return Resolution("outside", task_id, TASK_TYPE)

    return resolve


def record_resolver(
    run: TaskRun, train: Sequence[TaskInstance], engine: _SciWorldVariations | None = None
) -> Callable[[str], Resolution]:
    """A record's key (see :func:`eto_record_key`) -> what it names: a train task, a task outside
    the train list (kept), a held-out task (refused) or nothing the engine has (unknown).

    ScienceWorld asks its engine lazily, through ``engine``; pass one and close it after (as
    :func:`import_experts` does), or the borrowed JVM host stays up for the process. ``train``
    resolves the ids of any other benchmark as they are.
    """
    if run.task == "sciworld":
        return _sciworld_resolver(run, engine or _SciWorldVariations())
    if run.task == "alfworld":
        return _alfworld_resolver(run)
    if run.task == "webshop":
        return _webshop_resolver(run)
    types = {t.task_id: t.task_type for t in train}

    def resolve(key: str) -> Resolution:
        for candidate in (key, f"train/{key}"):
            if candidate in types:
                return Resolution("train", candidate, types[candidate])
        return _unknown(key, f"no {run.task} task has it")

    return resolve


@dataclass
class ExpertImport:
    """An imported SFT file: the kept trajectories and records, and how every other record fared."""

    trajectories: list[Trajectory]
    records: list[EtoSftRecord]
    report: ReadReport
    outside_scope: int  # known train tasks the profile does not run (a subset profile): not an error

    @property
    def problems(self) -> list[RecordProblem]:
        return self.report.problems


def import_experts(run: TaskRun, path: Path, train: Sequence[TaskInstance]) -> ExpertImport:
    """Trajectories of an ETO-layout SFT file, every record judged before any error is raised.

    Kept: records of the train list within the profile's scope, and records of real tasks outside
    the train list (ETO trains on every record of its file) when the scope has no per-type cap and
    admits their type. Refused: records of dev / test tasks. Bad: unknown tasks, malformed records.
    With ``on_bad_record="fail"`` one error lists every refused and bad record.
    """
    policy = run.profile.expert.on_bad_record
    all_train = run.benchmark.tasks("train")  # unscoped: the scope only selects, it does not define ids
    engine = _SciWorldVariations()
    resolve = record_resolver(run, all_train, engine)
    try:
        matched, report = read_and_match_sft(path, resolve, benchmark=run.task, on_bad_record=policy)
    finally:
        engine.close()
    by_id = {t.task_id: t for t in train}
    outside_types = {o.index: o.task_type for o in report.outside}
    scope = run.scope
    scoped_types = {t.task_type for t in train}
    trajectories: list[Trajectory] = []
    kept: list[EtoSftRecord] = []
    outside_scope = 0
    for record, task_id in matched:
        task = by_id.get(task_id)
        task_type = task.task_type if task is not None else outside_types.get(record.index)
        admitted = task_type is not None and (
            scope.train_per_type is None and (not scope.task_types or task_type in scoped_types)
        )
        if task_type is None or (task is None and not admitted):
            outside_scope += 1
            continue
        traj = record_to_trajectory(record, task_id=task_id, task_type=task_type, split="train")
        traj.source = "expert"
        traj.metadata["imported_from"] = str(path)
        trajectories.append(traj)
        kept.append(record)
    return ExpertImport(trajectories, kept, report, outside_scope)


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
    outside_list: list[str] = []
    refused = 0
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
        imported = import_experts(run, source_path, splits["train"])
        experts, records, outside = imported.trajectories, imported.records, imported.outside_scope
        problems = list(imported.problems)
        refused = imported.report.refused
        kept_ids = {r.index for r in records}
        outside_list = [o.task_id for o in imported.report.outside if o.index in kept_ids]
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
    if outside_list:
        warnings.append(f"{run.task}: {len(outside_list)} expert records are outside the train list (kept)")
    return StageResult(
        metrics={
            "expert_count": len(experts),
            "expert_dropped": len(dropped),
            "expert_bad_records": len({(p.index, p.record_id) for p in problems}),
            "expert_refused_held_out": refused,
            "expert_outside_train_list": len(outside_list),
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
            "records_outside_train_list": outside_list[:50],
            "split_sizes": {s: len(ts) for s, ts in splits.items()},
            "split_source": getattr(run.benchmark, "split_source", "benchmark"),
            "example_task_types": sorted(book.examples),
            "comparable_with_paper": comparability_tag(reasons),
            "path": layout.expert_jsonl,
        },
        warnings=warnings,
    )
