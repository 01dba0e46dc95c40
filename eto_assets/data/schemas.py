"""The records that flow through the pipeline: messages, trajectories, preference pairs.

A trajectory holds only the episode: the task message first (user), then alternating agent
(assistant) and environment (user) turns. The instruction and in-context example are prepended
by :mod:`eto_assets.agent.prompt` when a model sees it, so prompt changes never touch stored data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from eto_assets.data.files import atomic_write_lines
from eto_assets.data.validation import pair_problems, trajectory_problems

Role = Literal["user", "assistant"]


class DataFormatError(ValueError):
    """A stored record is malformed; the message names the file and record."""


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass
class Trajectory:
    """One episode of one task instance."""

    task_id: str
    task_type: str
    split: str
    messages: list[Message]
    reward: float
    success: bool
    source: str  # "expert" | "agent" | "step-expert" ...
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return sum(1 for m in self.messages if m.role == "assistant")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Trajectory:
        messages = [Message(role=m["role"], content=m["content"]) for m in record["messages"]]
        for m in messages:
            if m.role not in ("user", "assistant"):
                raise ValueError(f"unknown role {m.role!r}")
        return cls(
            task_id=str(record["task_id"]),
            task_type=str(record["task_type"]),
            split=str(record["split"]),
            messages=messages,
            reward=float(record["reward"]),
            success=bool(record["success"]),
            source=str(record.get("source", "unknown")),
            metadata=dict(record.get("metadata", {})),
        )


@dataclass
class PreferencePair:
    """ETO pair: shared prompt (the task message), a preferred and a dispreferred continuation."""

    task_id: str
    task_type: str
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    chosen_reward: float
    rejected_reward: float
    chosen_source: str
    rejected_source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> PreferencePair:
        def msgs(key: str) -> list[Message]:
            return [Message(role=m["role"], content=m["content"]) for m in record[key]]

        return cls(
            task_id=str(record["task_id"]),
            task_type=str(record["task_type"]),
            prompt=msgs("prompt"),
            chosen=msgs("chosen"),
            rejected=msgs("rejected"),
            chosen_reward=float(record["chosen_reward"]),
            rejected_reward=float(record["rejected_reward"]),
            chosen_source=str(record["chosen_source"]),
            rejected_source=str(record["rejected_source"]),
        )


def write_jsonl(path: Path, records: Iterable[Trajectory | PreferencePair]) -> int:
    """Write records atomically (temp file + rename) so a crash never leaves half a file."""
    return atomic_write_lines(path, (json.dumps(r.to_dict(), ensure_ascii=False) for r in records))


def append_jsonl(path: Path, record: Trajectory | PreferencePair) -> None:
    """Append one record and flush, so finished work survives an interruption."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        fh.flush()


def _iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(f"{path}:{lineno}: not UTF-8 text ({exc.reason})") from exc
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                torn = "" if raw.endswith(b"\n") else "; the line has no end, so a write was interrupted"
                raise DataFormatError(f"{path}:{lineno}: not valid JSON ({exc.msg}{torn})") from exc
            if not isinstance(record, dict):
                raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a bad line raises :class:`DataFormatError` naming file and line."""
    return [record for _, record in _iter_records(Path(path))]


def read_trajectories(path: Path) -> list[Trajectory]:
    """Read a trajectory JSONL file; a malformed record, or one whose turns are out of order (see
    :func:`~eto_assets.data.validation.trajectory_problems`), raises an error naming file and line:
    every stage reads through here, so none trains on a file edited by hand into the wrong shape."""
    out: list[Trajectory] = []
    for lineno, record in _iter_records(path):
        try:
            trajectory = Trajectory.from_dict(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{path}:{lineno}: malformed trajectory record ({exc!r})") from exc
        problems = trajectory_problems(trajectory.messages)
        if problems:
            raise DataFormatError(
                f"{path}:{lineno}: trajectory of task {trajectory.task_id}: "
                + "; ".join(str(p) for p in problems)
            )
        out.append(trajectory)
    return out


def read_pairs(path: Path) -> list[PreferencePair]:
    """Read a preference-pair JSONL file; a malformed or misordered record names file and line."""
    out: list[PreferencePair] = []
    for lineno, record in _iter_records(path):
        try:
            pair = PreferencePair.from_dict(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{path}:{lineno}: malformed preference-pair record ({exc!r})") from exc
        problems = pair_problems(pair.prompt, pair.chosen, pair.rejected)
        if problems:
            raise DataFormatError(f"{path}:{lineno}: pair of task {pair.task_id}: " + "; ".join(problems))
        out.append(pair)
    return out
