"""The 1-shot prompt: instruction, one solved example, then the task.

Stored trajectories hold only the episode; the preamble is prepended whenever a model reads or
writes one. Two layouts (profile ``prompt.layout``, recorded in the prompt book):

* ``eto`` (default, ETO's own): training records (SFT and DPO, :func:`training_conversation`) are
  the instruction (user), "OK" (assistant), then the episode: no in-context example. At exploration
  and evaluation (:func:`build_conversation`) the example follows the "OK" as its own chat turns
  (task, action, observation, ..., action), then the new task; as ETO's evaluator sends it.
* ``flat`` (this project's earlier layout): the example of the task's type is rendered as text
  into the first user turn, and the same preamble is used for training and inference.

A prompt that no longer fits the model's context keeps its preamble and task turn and leaves out
the episode's oldest (action, observation) rounds (:func:`cut_oldest_rounds`; the rollout engine
decides how many, profile ``rollout.context_overflow``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from eto_assets.data.files import atomic_write_json
from eto_assets.data.schemas import Message, Trajectory
from eto_assets.envs.base import PromptSpec

ACK = "OK"
LAYOUTS = ("eto", "flat")
Layout = Literal["eto", "flat"]


@dataclass(frozen=True)
class PromptBook:
    """The instruction and the in-context example per task type (falls back to any example)."""

    instruction: str
    examples: dict[str, list[Message]]
    layout: Layout = "eto"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"prompt layout {self.layout!r}: expected one of {list(LAYOUTS)}")

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
            "layout": self.layout,
        }

    @classmethod
    def from_dict(cls, record: dict) -> PromptBook:
        return cls(
            instruction=record["instruction"],
            examples={k: [Message(**m) for m in v] for k, v in record["examples"].items()},
            layout=record.get("layout", "flat"),  # books written before layouts existed were flat
        )

    def for_type(self, task_type: str) -> PromptBook:
        """The book a record of ``task_type`` is rendered with: this one (see :class:`PromptBooks`)."""
        return self

    def write(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: Path) -> PromptBook | PromptBooks:
        """A task's prompt book, or the books of several (a :class:`PromptBooks` file)."""
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no prompt book; materialize expert_trajectories first")
        record = json.loads(path.read_text())
        return PromptBooks.from_dict(record) if "books" in record else cls.from_dict(record)


@dataclass(frozen=True)
class PromptBooks:
    """The prompt books of several benchmarks, for one policy trained on all of them (multi-task):
    a record is rendered with the book of the benchmark its task type belongs to, so each keeps its
    own instruction and examples. Read and written like a :class:`PromptBook`."""

    books: dict[str, PromptBook]  # benchmark -> its book
    types: dict[str, str]  # task type -> benchmark

    @classmethod
    def of(cls, books: dict[str, PromptBook], task_types: dict[str, Iterable[str]]) -> PromptBooks:
        """Books by benchmark and each benchmark's task types; a task type two benchmarks share
        could not tell which book is its own, and is refused."""
        types: dict[str, str] = {}
        for benchmark, names in task_types.items():
            for name in names:
                if types.setdefault(name, benchmark) != benchmark:
                    raise ValueError(f"task type {name!r} belongs to both {types[name]} and {benchmark}")
        return cls(dict(books), types)

    def for_type(self, task_type: str) -> PromptBook:
        if task_type not in self.types:
            raise KeyError(f"task type {task_type!r} is in none of the books ({', '.join(self.books)})")
        return self.books[self.types[task_type]]

    def to_dict(self) -> dict:
        return {"books": {k: v.to_dict() for k, v in self.books.items()}, "types": self.types}

    @classmethod
    def from_dict(cls, record: dict) -> PromptBooks:
        return cls({k: PromptBook.from_dict(v) for k, v in record["books"].items()}, dict(record["types"]))

    def write(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())


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


def make_prompt_book(spec: PromptSpec, experts: Iterable[Trajectory], layout: Layout = "eto") -> PromptBook:
    return PromptBook(instruction=spec.instruction.strip(), examples=select_examples(experts), layout=layout)


def eto_prompt_book(folder: Path, task: str, layout: Layout = "eto") -> PromptBook:
    """The instruction and first in-context example of ``task`` from a folder in ETO's prompt layout
    (read by :mod:`eto_assets.agent.eto_prompts`); the one example serves every task type."""
    from eto_assets.agent.eto_prompts import load_eto_prompt

    prompt = load_eto_prompt(Path(folder), task)
    return PromptBook(prompt.instruction, {"*": list(prompt.examples[0])}, layout=layout)


def tokenizer_corpus(book: PromptBook, experts: Iterable[Trajectory]) -> list[str]:
    """Every text a model of this run reads: what the tiny model's tokenizer is trained on."""
    return [m.content for t in experts for m in (*preamble(book, t.task_type), *t.messages)]


def render_example(messages: list[Message]) -> str:
    """An example episode as plain text, each turn on its own line."""
    return "\n".join(m.content for m in messages)


def preamble(book: PromptBook | PromptBooks, task_type: str) -> list[Message]:
    """The turns before the task at exploration and evaluation (see the module docstring)."""
    book = book.for_type(task_type)
    example = book.example_for(task_type)
    if book.layout == "eto":
        return [Message("user", book.instruction), Message("assistant", ACK), *example]
    text = book.instruction
    if example:
        text += "\n\nHere is an example of a solved task.\n\n" + render_example(example)
        text += "\n\nNow it is your turn."
    return [Message("user", text), Message("assistant", ACK)]


def training_preamble(book: PromptBook | PromptBooks, task_type: str) -> list[Message]:
    """The turns before the episode in SFT and DPO records: ETO's has no in-context example."""
    book = book.for_type(task_type)
    if book.layout == "eto":
        return [Message("user", book.instruction), Message("assistant", ACK)]
    return preamble(book, task_type)


def _chat(messages: Iterable[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def build_conversation(
    book: PromptBook, task_type: str, episode: list[Message], cut_rounds: int = 0
) -> list[dict[str, str]]:
    """Chat messages (role/content dicts) a model reads while playing: preamble + episode so far,
    with the ``cut_rounds`` oldest rounds left out (see :func:`cut_oldest_rounds`)."""
    return _chat((*preamble(book, task_type), *cut_oldest_rounds(episode, cut_rounds)))


def episode_rounds(episode: list[Message]) -> int:
    """The (action, observation) rounds of an episode so far: the turns after its task turn, in pairs."""
    return max(0, (len(episode) - 1) // 2)


def cut_oldest_rounds(episode: list[Message], rounds: int) -> list[Message]:
    """The episode with its ``rounds`` oldest (action, observation) rounds left out: the task turn,
    then the newer rounds. What a prompt that overflows the context keeps (profile
    ``rollout.context_overflow``); the preamble (instruction, ``OK``, example) is never cut. At least
    the newest round stays."""
    if rounds <= 0:
        return list(episode)
    if rounds >= episode_rounds(episode):
        raise ValueError(f"cannot cut {rounds} rounds of an episode of {episode_rounds(episode)}")
    return [episode[0], *episode[1 + 2 * rounds :]]


def training_conversation(book: PromptBook, task_type: str, episode: list[Message]) -> list[dict[str, str]]:
    """Chat messages of a training record (SFT conversation, DPO prompt): preamble + episode."""
    return _chat((*training_preamble(book, task_type), *episode))
