"""ETO's FastChat-style training files: export our trajectories and pairs, import ETO's own data.

Layout (ETO's ``fastchat/train/train.py`` and ``train_dpo.py`` read these):

* a file is one JSON list of records; a turn is ``{"from": "human" | "gpt", "value": text}``;
* SFT record ``{"id", "conversations"}``: the instruction (human), an acknowledgement "OK" (gpt),
  then the episode (task turn, then agent / observation turns, ending on an agent turn). There is
  no in-context example: ETO uses one only at inference time. ETO's WebShop file adds ``reward``
  (and ``source``), its ALFWorld file adds ``game_file``; both are kept;
* DPO record ``{"id", "prompt", "chosen", "rejected"}``: ``prompt`` = instruction + "OK" + the shared
  task turn (ends on human), ``chosen`` / ``rejected`` = the two continuations (start and end on gpt).

Record ids in ETO's released data, per benchmark (how :func:`eto_record_key` reads them):

* ScienceWorld: ``"<n>_<v>"``, where ``n`` is the sub-task's number in ETO's ``taskname2id.json``
  (not the engine's task id) and ``v`` the variation, e.g. ``"11_0"`` = task-3-find-animal,
  variation 0. ETO's task loader builds the same string, and its pair builder joins the expert file
  to exploration outputs on it.
* WebShop: the integer goal (session) index into WebShop's human-goal list, stored as a JSON number.
  ETO's file holds index 4116 twice, so duplicate ids are reported, not rejected.
* ALFWorld: the id does not identify the game; ETO's pair builder matches ALFWorld records by
  ``game_file`` (``.../json_2.1.1/<split>/<task dir>/<trial dir>``), and so does this module.

Everything here is pure data handling: the instruction text comes in as an argument, so this
module does not depend on the prompt or environment code.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from eto_assets.data.files import atomic_write_json
from eto_assets.data.schemas import DataFormatError, Message, PreferencePair, Trajectory
from eto_assets.data.validation import check_conversation

ACK = "OK"
FROM_ETO: dict[str, str] = {"human": "user", "gpt": "assistant"}
TO_ETO: dict[str, str] = {v: k for k, v in FROM_ETO.items()}
SFT_KEYS = ("id", "conversations", "reward", "game_file")
DPO_KEYS = ("id", "prompt", "chosen", "rejected", "chosen_reward", "rejected_reward")

OnBadRecord = Literal["fail", "skip"]
Benchmark = Literal["sciworld", "webshop", "alfworld"]
RecordId = str | int


# --------------------------------------------------------------------------- records and reports


ProblemKind = Literal["malformed", "unknown", "held_out"]
PROBLEM_KINDS: tuple[ProblemKind, ...] = ("malformed", "unknown", "held_out")


@dataclass(frozen=True)
class RecordProblem:
    """Why one record is bad: its position in the file, its id when readable, the field at fault.

    ``kind`` separates a record that cannot be read (``malformed``), one naming no task of the engine
    (``unknown``) and one whose task is held out for evaluation (``held_out``: training on it would
    train on the evaluation), so a report can count each.
    """

    index: int
    record_id: RecordId | None
    field: str
    reason: str
    kind: ProblemKind = "malformed"

    def describe(self) -> str:
        who = (
            f"record {self.record_id!r} (index {self.index})"
            if self.record_id is not None
            else (f"record at index {self.index}")
        )
        return f"{who}, field '{self.field}': {self.reason}"


class EtoFormatError(DataFormatError):
    """Every bad record of one file in a single error, so a user fixes a file in one pass."""

    def __init__(self, path: Path, problems: Sequence[RecordProblem], total: int) -> None:
        self.path = path
        self.problems = sorted(problems, key=lambda p: p.index)
        bad = len({p.index for p in self.problems})
        kinds = {k: len({p.index for p in self.problems if p.kind == k}) for k in PROBLEM_KINDS}
        summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items() if n)
        lines = "\n".join("  " + p.describe() for p in self.problems)
        super().__init__(f"{path}: {bad} of {total} records are bad ({summary}):\n{lines}")


@dataclass(frozen=True)
class OutsideRecord:
    """A kept record whose task exists in the engine but is not in the benchmark's train list.

    ETO trains on every record of its SFT file, so such a record is kept; it is counted and listed
    because our train split (and so the expert count) no longer equals the file's tasks.
    """

    index: int
    record_id: RecordId
    task_id: str
    task_type: str


@dataclass
class ReadReport:
    """What a read (or a match) kept and skipped, and why."""

    path: Path
    total: int
    kept: int
    skipped: int
    problems: list[RecordProblem] = field(default_factory=list)
    duplicate_ids: dict[str, int] = field(default_factory=dict)  # id -> occurrences (> 1)
    outside: list[OutsideRecord] = field(default_factory=list)  # kept, but not in the train list

    def reasons(self) -> Counter[str]:
        """Problem counts by field (e.g. ``conversations[3].from``), for a log line."""
        return Counter(p.field for p in self.problems)

    def count(self, kind: ProblemKind) -> int:
        """Records with a problem of ``kind`` (a record counts once however many fields are bad)."""
        return len({p.index for p in self.problems if p.kind == kind})

    @property
    def refused(self) -> int:
        """Records refused because their task is held out (dev or test): never trained on."""
        return self.count("held_out")

    @property
    def bad(self) -> int:
        """Records that name no task (unknown) or cannot be read (malformed)."""
        return len({p.index for p in self.problems if p.kind != "held_out"})


@dataclass(frozen=True)
class EtoSftRecord:
    """One SFT record: the episode as our messages, the instruction turn kept separately."""

    id: RecordId
    instruction: str
    messages: tuple[Message, ...]  # the episode: task turn first, ends on an agent turn
    reward: float | None = None
    game_file: str | None = None
    ack: str = ACK
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)  # e.g. "source"
    index: int = field(default=-1, compare=False)  # position in the file it was read from


@dataclass(frozen=True)
class EtoDpoRecord:
    """One DPO record: ``prompt`` is the shared task prefix after the instruction and "OK"."""

    id: RecordId
    instruction: str
    prompt: tuple[Message, ...]  # starts and ends on a user turn
    chosen: tuple[Message, ...]  # starts and ends on an agent turn
    rejected: tuple[Message, ...]
    chosen_reward: float | None = None
    rejected_reward: float | None = None
    ack: str = ACK
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    index: int = field(default=-1, compare=False)


# --------------------------------------------------------------------------- writing


def to_eto_turns(messages: Iterable[Message]) -> list[dict[str, str]]:
    return [{"from": TO_ETO[m.role], "value": m.content} for m in messages]


def _check_instruction(instruction: object, ack: str) -> None:
    # A PromptBook passed where text is expected would only fail deep inside json.dumps.
    if not isinstance(instruction, str) or not instruction.strip():
        got = type(instruction).__name__
        raise TypeError(f"instruction must be the non-empty instruction text, got {got}")
    if not ack.strip():
        raise ValueError("the acknowledgement turn must not be empty")


def _check_export(what: str, messages: Sequence[Message], first: str, last: str) -> None:
    # An explored agent turn may be empty (the policy said nothing): that is data, not a defect.
    problems = [
        p
        for p in check_conversation(messages, first_role=first, last_role=last)
        if not (p.aspect == "text" and p.turn is not None and messages[p.turn].role == "assistant")
    ]
    if problems:
        raise DataFormatError(f"{what}: cannot export: " + "; ".join(str(p) for p in problems))


def sft_record(
    traj: Trajectory,
    instruction: str,
    *,
    ack: str = ACK,
    with_reward: bool = True,
    game_file: str | None = None,
) -> dict[str, Any]:
    """One ETO SFT record; ``game_file`` defaults to ``traj.metadata["game_file"]`` when present.

    The episode is checked first (user first, alternating, agent last): a malformed trajectory
    would otherwise only show up as a mislabelled turn inside training.
    """
    _check_instruction(instruction, ack)
    conversation = [Message("user", instruction), Message("assistant", ack), *traj.messages]
    _check_export(f"trajectory {traj.task_id!r}", conversation, "user", "assistant")
    record: dict[str, Any] = {"id": traj.task_id, "conversations": to_eto_turns(conversation)}
    if with_reward:
        record["reward"] = traj.reward
    game_file = game_file if game_file is not None else traj.metadata.get("game_file")
    if game_file is not None:
        record["game_file"] = str(game_file)
    return record


def sft_records(
    trajectories: Iterable[Trajectory],
    instruction: str,
    *,
    ack: str = ACK,
    with_reward: bool = True,
    game_files: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """ETO SFT records; ``game_files`` maps task ids to ALFWorld game files where wanted."""
    files = game_files or {}
    return [
        sft_record(t, instruction, ack=ack, with_reward=with_reward, game_file=files.get(t.task_id))
        for t in trajectories
    ]


def dpo_record(
    pair: PreferencePair, instruction: str, *, ack: str = ACK, with_rewards: bool = False
) -> dict[str, Any]:
    """One ETO DPO record. Rewards are not part of ETO's layout; ``with_rewards`` adds
    ``chosen_reward`` / ``rejected_reward`` for lossless round trips of our own pairs."""
    _check_instruction(instruction, ack)
    prompt = [Message("user", instruction), Message("assistant", ack), *pair.prompt]
    what = f"pair {pair.task_id!r}"
    _check_export(f"{what} prompt", prompt, "user", "user")
    _check_export(f"{what} chosen", [*prompt, *pair.chosen], "user", "assistant")
    _check_export(f"{what} rejected", [*prompt, *pair.rejected], "user", "assistant")
    record: dict[str, Any] = {
        "id": pair.task_id,
        "prompt": to_eto_turns(prompt),
        "chosen": to_eto_turns(pair.chosen),
        "rejected": to_eto_turns(pair.rejected),
    }
    if with_rewards:
        record["chosen_reward"] = pair.chosen_reward
        record["rejected_reward"] = pair.rejected_reward
    return record


def dpo_records(
    pairs: Iterable[PreferencePair], instruction: str, *, ack: str = ACK, with_rewards: bool = False
) -> list[dict[str, Any]]:
    return [dpo_record(p, instruction, ack=ack, with_rewards=with_rewards) for p in pairs]


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write one JSON list atomically (temp file + rename), as ETO's trainers expect."""
    return atomic_write_json(path, records)


# --------------------------------------------------------------------------- reading

Problems = list[tuple[str, str]]  # (field, reason) within one record


def _parse_turns(
    value: Any, name: str, first: str, last: str, min_turns: int
) -> tuple[list[Message], Problems]:
    """Messages of a turn list plus its problems; ordering is checked only once every role is known."""
    if not isinstance(value, list):
        return [], [(name, f"must be a list of turns, got {type(value).__name__}")]
    if not value:
        return [], [(name, "empty conversation")]
    problems: Problems = []
    messages: list[Message] = []
    for i, turn in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(turn, dict):
            problems.append((where, "turn must be an object with 'from' and 'value'"))
            continue
        role, text = turn.get("from"), turn.get("value")
        if "from" not in turn:
            problems.append((f"{where}.from", "missing"))
        elif role not in FROM_ETO:
            problems.append((f"{where}.from", f"unknown role {role!r} (expected 'human' or 'gpt')"))
        if "value" not in turn:
            problems.append((f"{where}.value", "missing"))
        elif not isinstance(text, str):
            problems.append((f"{where}.value", f"must be a string, got {type(text).__name__}"))
        elif not text.strip():
            problems.append((f"{where}.value", "empty turn text"))
        messages.append(Message(FROM_ETO.get(role, "user"), text if isinstance(text, str) else ""))  # type: ignore[arg-type]
    if problems:
        return [], problems
    for p in check_conversation(messages, first_role=first, last_role=last):
        where = name if p.turn is None else f"{name}[{p.turn}].{'value' if p.aspect == 'text' else 'from'}"
        problems.append((where, p.reason))
    if not problems and len(messages) < min_turns:
        problems.append((name, f"has {len(messages)} turns, needs at least {min_turns}"))
    return ([] if problems else messages), problems


def _parse_id(record: dict[str, Any]) -> tuple[RecordId | None, Problems]:
    if "id" not in record:
        return None, [("id", "missing")]
    rid = record["id"]
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        return None, [("id", f"must be a string or an integer, got {type(rid).__name__}")]
    if isinstance(rid, str) and not rid.strip():
        return None, [("id", "empty")]
    return rid, []


def _parse_reward(record: dict[str, Any], key: str) -> tuple[float | None, Problems]:
    value = record.get(key)
    if value is None:
        return None, []
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None, [(key, f"must be a finite number, got {value!r}")]
    return float(value), []


def _parse_sft(record: dict[str, Any]) -> tuple[EtoSftRecord | None, RecordId | None, Problems]:
    rid, problems = _parse_id(record)
    if "conversations" not in record:
        problems.append(("conversations", "missing"))
        turns: list[Message] = []
    else:
        # instruction, "OK", task turn, agent turn at the least
        turns, bad = _parse_turns(record["conversations"], "conversations", "user", "assistant", 4)
        problems += bad
    reward, bad = _parse_reward(record, "reward")
    problems += bad
    game_file = record.get("game_file")
    if game_file is not None and (not isinstance(game_file, str) or not game_file.strip()):
        problems.append(("game_file", f"must be a non-empty string, got {game_file!r}"))
    if problems or rid is None:
        return None, rid, problems
    extra = {k: v for k, v in record.items() if k not in SFT_KEYS}
    return (
        EtoSftRecord(rid, turns[0].content, tuple(turns[2:]), reward, game_file, turns[1].content, extra),
        rid,
        [],
    )


def _parse_dpo(record: dict[str, Any]) -> tuple[EtoDpoRecord | None, RecordId | None, Problems]:
    rid, problems = _parse_id(record)
    parts: dict[str, list[Message]] = {}
    # prompt: instruction, "OK", task turn; continuations start and end on the agent
    shapes = {
        "prompt": ("user", "user", 3),
        "chosen": ("assistant", "assistant", 1),
        "rejected": ("assistant", "assistant", 1),
    }
    for key, (first, last, min_turns) in shapes.items():
        if key not in record:
            problems.append((key, "missing"))
            continue
        parts[key], bad = _parse_turns(record[key], key, first, last, min_turns)
        problems += bad
    rewards = {}
    for key in ("chosen_reward", "rejected_reward"):
        rewards[key], bad = _parse_reward(record, key)
        problems += bad
    if problems or rid is None:
        return None, rid, problems
    prompt = parts["prompt"]
    extra = {k: v for k, v in record.items() if k not in DPO_KEYS}
    return (
        EtoDpoRecord(
            rid,
            prompt[0].content,
            tuple(prompt[2:]),
            tuple(parts["chosen"]),
            tuple(parts["rejected"]),
            rewards["chosen_reward"],
            rewards["rejected_reward"],
            prompt[1].content,
            extra,
        ),
        rid,
        [],
    )


def _load_list(path: Path) -> list[Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    if not isinstance(data, list):
        got = type(data).__name__
        raise DataFormatError(f"{path}: the file must hold one JSON list of records, got {got}")
    return data


R = TypeVar("R", EtoSftRecord, EtoDpoRecord)


def _read(
    path: Path,
    parse: Callable[[dict[str, Any]], tuple[R | None, RecordId | None, Problems]],
    on_bad_record: OnBadRecord,
) -> tuple[list[R], ReadReport]:
    if on_bad_record not in ("fail", "skip"):
        raise ValueError(f"on_bad_record must be 'fail' or 'skip', got {on_bad_record!r}")
    path = Path(path)
    data = _load_list(path)
    kept: list[R] = []
    problems: list[RecordProblem] = []
    bad_indices: set[int] = set()
    for index, raw in enumerate(data):
        if not isinstance(raw, dict):
            reason = f"must be an object, got {type(raw).__name__}"
            problems.append(RecordProblem(index, None, "<record>", reason))
            bad_indices.add(index)
            continue
        record, rid, bad = parse(raw)
        if record is None:
            problems += [RecordProblem(index, rid, f, reason) for f, reason in bad]
            bad_indices.add(index)
            continue
        kept.append(_with_index(record, index))
    if problems and on_bad_record == "fail":
        raise EtoFormatError(path, problems, len(data))
    counts = Counter(str(r.id) for r in kept)
    report = ReadReport(
        path=path,
        total=len(data),
        kept=len(kept),
        skipped=len(bad_indices),
        problems=problems,
        duplicate_ids={k: n for k, n in counts.items() if n > 1},
    )
    return kept, report


def _with_index(record: R, index: int) -> R:
    return replace(record, index=index)


def read_eto_sft(path: Path, on_bad_record: OnBadRecord = "fail") -> tuple[list[EtoSftRecord], ReadReport]:
    """Read an ETO SFT file strictly.

    File-level faults (missing, not JSON, not a list) always raise. Record faults (missing field,
    unknown role, wrong role order, empty conversation or turn, bad reward / game_file) raise ONE
    :class:`EtoFormatError` listing every bad record by file, id (or index) and field when
    ``on_bad_record="fail"``; with ``"skip"`` the valid records are returned and the report says
    how many were skipped and why.
    """
    return _read(path, _parse_sft, on_bad_record)


def read_eto_dpo(path: Path, on_bad_record: OnBadRecord = "fail") -> tuple[list[EtoDpoRecord], ReadReport]:
    """Read an ETO DPO file strictly (same error policy as :func:`read_eto_sft`)."""
    return _read(path, _parse_dpo, on_bad_record)


def read_sft_conversations(path: Path) -> list[list[Message]]:
    """Episode messages of every record of an ETO SFT file (strict; raises on any bad record)."""
    records, _ = read_eto_sft(path)
    return [list(r.messages) for r in records]


# --------------------------------------------------------------------------- back to our records


def record_to_trajectory(
    record: EtoSftRecord,
    *,
    task_id: str,
    task_type: str,
    split: str,
    source: str = "eto-expert",
    default_reward: float = 1.0,
) -> Trajectory:
    """A :class:`Trajectory` from an SFT record. ETO's ScienceWorld and ALFWorld expert files carry
    no reward (ETO scores them 1.0 when building pairs), hence ``default_reward``."""
    reward = record.reward if record.reward is not None else default_reward
    metadata: dict[str, Any] = {"eto_id": record.id}
    if record.game_file is not None:
        metadata["game_file"] = record.game_file
    messages = list(record.messages)
    return Trajectory(task_id, task_type, split, messages, reward, reward >= 1.0, source, metadata)


def record_to_pair(
    record: EtoDpoRecord,
    *,
    task_id: str,
    task_type: str,
    chosen_source: str = "eto",
    rejected_source: str = "eto",
    default_rewards: tuple[float, float] = (1.0, 0.0),
) -> PreferencePair:
    """A :class:`PreferencePair` from a DPO record; ETO's files have no rewards, so absent ones take
    ``default_rewards`` (ETO only guarantees chosen > rejected)."""
    chosen_reward = record.chosen_reward if record.chosen_reward is not None else default_rewards[0]
    rejected_reward = record.rejected_reward if record.rejected_reward is not None else default_rewards[1]
    return PreferencePair(
        task_id,
        task_type,
        list(record.prompt),
        list(record.chosen),
        list(record.rejected),
        chosen_reward,
        rejected_reward,
        chosen_source,
        rejected_source,
    )


# --------------------------------------------------------------------------- matching records to tasks


def alfworld_game_key(game_file: str) -> str:
    """``<split dir>/<task dir>/<trial dir>`` of an ALFWorld game path, whatever its prefix
    (``data/json_2.1.1/...``, an absolute path) and with or without the ``game.tw-pddl`` tail."""
    parts = [p for p in game_file.replace("\\", "/").split("/") if p]
    if parts and parts[-1].endswith((".tw-pddl", ".json", ".pddl")):
        parts = parts[:-1]
    if "json_2.1.1" in parts:
        parts = parts[parts.index("json_2.1.1") + 1 :]
    if len(parts) < 3:
        raise ValueError(f"not an ALFWorld game path (<split>/<task>/<trial>): {game_file!r}")
    return "/".join(parts[-3:])


def eto_record_key(record: EtoSftRecord | EtoDpoRecord, benchmark: Benchmark) -> tuple[str, str]:
    """(field, key) identifying the task of a record: ``("id", "11_0")`` for ScienceWorld,
    ``("id", "4116")`` for WebShop, ``("game_file", "train/<task>/<trial>")`` for ALFWorld."""
    if benchmark == "sciworld":
        return "id", str(record.id)
    if benchmark == "webshop":
        return "id", str(record.id).strip()
    if benchmark == "alfworld":
        game_file = getattr(record, "game_file", None) or record.extra.get("game_file")
        if not game_file:
            raise ValueError("ALFWorld records are matched by game_file, which this record lacks")
        return "game_file", alfworld_game_key(str(game_file))
    raise ValueError(f"unknown benchmark {benchmark!r}; known: sciworld, webshop, alfworld")


TaskStatus = Literal["train", "outside", "held_out", "unknown"]


@dataclass(frozen=True)
class Resolution:
    """What a record's key names, as the benchmark's engine and split lists see it.

    * ``train``: a task of the train list (``task_id``), kept;
    * ``outside``: a task the engine has but the train list lacks (``task_id``, ``task_type``); kept,
      because ETO trains on every record of its SFT file, and counted;
    * ``held_out``: a task of the dev or test split; refused, ``reason`` names the split, because
      training on it would train on the evaluation;
    * ``unknown``: the engine has no such task or variation; ``reason`` says which part is missing.
    """

    status: TaskStatus
    task_id: str | None = None
    task_type: str | None = None
    reason: str = ""


Resolver = Mapping[str, str] | Callable[[str], "str | Resolution | None"]


def _as_resolution(found: str | Resolution | None, key: str, benchmark: str) -> Resolution:
    # A plain task id (or None) is the older resolver contract: a train task, or an unknown one.
    if isinstance(found, Resolution):
        return found
    if found is None:
        return Resolution("unknown", reason=f"unknown task id {key!r}: no {benchmark} task has it")
    return Resolution("train", found)


def match_records(
    records: Sequence[R],
    resolve: Resolver,
    *,
    benchmark: Benchmark,
    path: Path,
    on_bad_record: OnBadRecord = "fail",
) -> tuple[list[tuple[R, str]], ReadReport]:
    """Pair each record with our task id: ``resolve`` maps the record's key (see
    :func:`eto_record_key`) to a :class:`Resolution`, or to a task id / None (train task / unknown).

    Records of the train list and records outside it (kept, listed in ``report.outside``) are
    matched; unknown and held-out ones are bad records naming ``path``, the record id and the field
    used (``id``, or ``game_file`` for ALFWorld), under the same fail / skip policy as the readers.
    """
    lookup: Callable[[str], str | Resolution | None] = (
        resolve.get if isinstance(resolve, Mapping) else resolve
    )
    matched: list[tuple[R, str]] = []
    problems: list[RecordProblem] = []
    outside: list[OutsideRecord] = []
    for pos, record in enumerate(records):
        index = record.index if record.index >= 0 else pos
        try:
            key_field, key = eto_record_key(record, benchmark)
        except ValueError as exc:
            problems.append(RecordProblem(index, record.id, "game_file", str(exc)))
            continue
        found = _as_resolution(lookup(key), key, benchmark)
        if found.status in ("unknown", "held_out") or found.task_id is None:
            kind: ProblemKind = "held_out" if found.status == "held_out" else "unknown"
            problems.append(RecordProblem(index, record.id, key_field, found.reason, kind))
            continue
        if found.status == "outside":
            outside.append(OutsideRecord(index, record.id, found.task_id, found.task_type or ""))
        matched.append((record, found.task_id))
    if problems and on_bad_record == "fail":
        raise EtoFormatError(Path(path), problems, len(records))
    counts = Counter(task_id for _, task_id in matched)
    report = ReadReport(
        path=Path(path),
        total=len(records),
        kept=len(matched),
        skipped=len(problems),
        problems=problems,
        duplicate_ids={k: n for k, n in counts.items() if n > 1},
        outside=outside,
    )
    return matched, report


def read_and_match_sft(
    path: Path, resolve: Resolver, *, benchmark: Benchmark, on_bad_record: OnBadRecord = "fail"
) -> tuple[list[tuple[EtoSftRecord, str]], ReadReport]:
    """Read an SFT file and match its records to tasks, judging every record before deciding.

    Reading and matching separately would let the reader's error (``fail``) hide the records that
    are well formed but name an unknown or held-out task; here one :class:`EtoFormatError` lists
    every bad record of the file, whatever the reason, in file order. The report's ``total`` is the
    file's record count and ``skipped`` counts each bad record once.
    """
    if on_bad_record not in ("fail", "skip"):
        raise ValueError(f"on_bad_record must be 'fail' or 'skip', got {on_bad_record!r}")
    records, read_report = read_eto_sft(path, "skip")
    matched, match_report = match_records(
        records, resolve, benchmark=benchmark, path=path, on_bad_record="skip"
    )
    problems = sorted([*read_report.problems, *match_report.problems], key=lambda p: p.index)
    if problems and on_bad_record == "fail":
        raise EtoFormatError(Path(path), problems, read_report.total)
    report = replace(
        match_report,
        total=read_report.total,
        skipped=len({p.index for p in problems}),
        problems=problems,
    )
    return matched, report
