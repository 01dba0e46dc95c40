"""The 1-shot prompt: instruction, one solved example of the same task type, then the task.

Stored trajectories hold only the episode; :func:`build_conversation` prepends the preamble
whenever a model reads or writes a trajectory (SFT, exploration, DPO, evaluation), so every stage
sees exactly the same context.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from eto_assets.data.schemas import Message, Trajectory
from eto_assets.envs.base import PromptSpec

ACK = "OK"


@dataclass(frozen=True)
class PromptBook:
    """The instruction and the in-context example per task type (falls back to any example)."""

    instruction: str
    examples: dict[str, list[Message]]

    def example_for(self, task_type: str) -> list[Message]:
        if task_type in self.examples:
            return self.examples[task_type]
        if not self.examples:
            return []
        return self.examples[sorted(self.examples)[0]]

    def to_dict(self) -> dict:
        return {
            "instruction": self.instruction,
            "examples": {k: [m.__dict__ for m in v] for k, v in self.examples.items()},
        }

    @classmethod
    def from_dict(cls, record: dict) -> PromptBook:
        return cls(
            instruction=record["instruction"],
            examples={k: [Message(**m) for m in v] for k, v in record["examples"].items()},
        )

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False))
        return path

    @classmethod
    def read(cls, path: Path) -> PromptBook:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no prompt book; materialize expert_trajectories first")
        return cls.from_dict(json.loads(path.read_text()))


def select_examples(experts: Iterable[Trajectory]) -> dict[str, list[Message]]:
    """The shortest successful expert trajectory of each task type (ties broken by task id)."""
    best: dict[str, Trajectory] = {}
    for traj in experts:
        if not traj.success:
            continue
        key = (traj.num_steps, len("".join(m.content for m in traj.messages)), traj.task_id)
        cur = best.get(traj.task_type)
        if cur is None or key < (cur.num_steps, len("".join(m.content for m in cur.messages)), cur.task_id):
            best[traj.task_type] = traj
    return {k: v.messages for k, v in sorted(best.items())}


def make_prompt_book(spec: PromptSpec, experts: Iterable[Trajectory]) -> PromptBook:
    return PromptBook(instruction=spec.instruction.strip(), examples=select_examples(experts))


def tokenizer_corpus(book: PromptBook, experts: Iterable[Trajectory]) -> list[str]:
    """Every text a model of this run reads: what the tiny model's tokenizer is trained on."""
    return [m.content for t in experts for m in (*preamble(book, t.task_type), *t.messages)]


def render_example(messages: list[Message]) -> str:
    """An example episode as plain text, each turn on its own line."""
    return "\n".join(m.content for m in messages)


def preamble(book: PromptBook, task_type: str) -> list[Message]:
    example = book.example_for(task_type)
    text = book.instruction
    if example:
        text += "\n\nHere is an example of a solved task.\n\n" + render_example(example)
        text += "\n\nNow it is your turn."
    return [Message("user", text), Message("assistant", ACK)]


def build_conversation(book: PromptBook, task_type: str, episode: list[Message]) -> list[dict[str, str]]:
    """Chat messages (role/content dicts) for a model: preamble + episode so far."""
    return [{"role": m.role, "content": m.content} for m in (*preamble(book, task_type), *episode)]
