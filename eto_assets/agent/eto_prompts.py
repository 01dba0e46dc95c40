"""Prompts kept in ETO's folder layout, turned into the chat turns ETO's evaluator sends.

Layout: ``<folder>/instructions/<task>_inst.txt`` (plain text) and
``<folder>/icl_examples/<task>_icl.json``: a JSON list of examples, each a list of turns
``{"role": "user" | "assistant", "content": text}`` starting on the user (the task) and alternating.
ETO's own files are not uniform about the role key (one of them marks agent turns with
``"from": "gpt"``) and ETO ignores it, assigning roles by position; we accept ``role`` or ``from``
with either vocabulary but check it agrees with the position, so a shifted turn is caught.

Chat turns, as ETO builds them in its default "conversation" format with one example: the
instruction (user), "OK" (assistant), the example's turns, then the new task (user). With more
examples their turns simply follow one another. The instruction text is sent exactly as read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eto_assets.data.schemas import DataFormatError, Message

ACK = "OK"
_ROLE_NAMES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}


@dataclass(frozen=True)
class EtoPrompt:
    """One task's instruction and in-context examples (each a user-first, agent-last episode)."""

    task: str
    instruction: str
    examples: tuple[tuple[Message, ...], ...]


def prompt_paths(folder: Path, task: str) -> tuple[Path, Path]:
    """(instruction file, example file) of ``task`` in ETO's layout."""
    folder = Path(folder)
    return folder / "instructions" / f"{task}_inst.txt", folder / "icl_examples" / f"{task}_icl.json"


def _parse_examples(path: Path, raw: object) -> tuple[tuple[Message, ...], ...]:
    if not isinstance(raw, list) or not raw:
        raise DataFormatError(f"{path}: expected a non-empty JSON list of examples (each a list of turns)")
    problems: list[str] = []
    examples = []
    for e, example in enumerate(raw):
        if not isinstance(example, list) or not example:
            problems.append(f"example {e}: must be a non-empty list of turns")
            continue
        messages = []
        for t, turn in enumerate(example):
            where = f"example {e}, turn {t}"
            expected = "user" if t % 2 == 0 else "assistant"
            if not isinstance(turn, dict):
                problems.append(f"{where}: must be an object with 'role' and 'content'")
                continue
            content = turn.get("content")
            if not isinstance(content, str) or not content.strip():
                problems.append(f"{where}, field 'content': missing or empty")
            key = "role" if "role" in turn else "from" if "from" in turn else None
            if key is None:
                problems.append(f"{where}: no 'role' (or 'from') field")
            elif _ROLE_NAMES.get(turn[key]) != expected:
                problems.append(
                    f"{where}, field '{key}': {turn[key]!r} where the position needs the {expected}"
                )
            messages.append(Message(expected, content if isinstance(content, str) else ""))
        if len(messages) % 2:  # roles follow position, so an odd count ends on the user
            problems.append(f"example {e}: must end on an assistant turn")
        examples.append(tuple(messages))
    if problems:
        raise DataFormatError(f"{path}: malformed in-context examples:\n  " + "\n  ".join(problems))
    return tuple(examples)


def load_eto_prompt(folder: Path, task: str) -> EtoPrompt:
    """Read ``task``'s instruction and examples; a missing file raises FileNotFoundError naming it,
    a malformed example file raises DataFormatError naming the file, example, turn and field."""
    inst_path, icl_path = prompt_paths(folder, task)
    for path in (inst_path, icl_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: prompt file not found (expected ETO's prompt folder layout)")
    instruction = inst_path.read_text(encoding="utf-8")
    if not instruction.strip():
        raise DataFormatError(f"{inst_path}: the instruction is empty")
    try:
        raw = json.loads(icl_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{icl_path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    return EtoPrompt(task, instruction, _parse_examples(icl_path, raw))


def preamble_messages(prompt: EtoPrompt, icl_num: int = 1, ack: str = ACK) -> list[Message]:
    """Instruction (user), ``ack`` (assistant), then the first ``icl_num`` examples' turns: the chat
    turns that come before the task. ETO evaluates and explores with ``icl_num=1``."""
    if icl_num < 0:
        raise ValueError(f"icl_num must be >= 0, got {icl_num}")
    if icl_num > len(prompt.examples):
        raise ValueError(f"{prompt.task}: {icl_num} examples asked for, {len(prompt.examples)} available")
    out = [Message("user", prompt.instruction), Message("assistant", ack)]
    for example in prompt.examples[:icl_num]:
        out.extend(example)
    return out


def task_messages(prompt: EtoPrompt, task_text: str, icl_num: int = 1, ack: str = ACK) -> list[Message]:
    """The full first model input: the preamble, then the new task as a user turn."""
    if not task_text.strip():
        raise ValueError("the task text is empty")
    return [*preamble_messages(prompt, icl_num, ack), Message("user", task_text)]
