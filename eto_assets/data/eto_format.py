"""Export to (and import from) ETO's FastChat-style JSON: ``from``/``value`` turns,
``human``/``gpt`` roles. SFT records are ``{id, conversations}``; DPO records are
``{id, prompt, chosen, rejected}`` with lists of turns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eto_assets.agent.prompt import PromptBook, preamble
from eto_assets.data.schemas import DataFormatError, Message, PreferencePair, Trajectory

_TO_ETO = {"user": "human", "assistant": "gpt"}
_FROM_ETO = {v: k for k, v in _TO_ETO.items()}


def _turns(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"from": _TO_ETO[m.role], "value": m.content} for m in messages]


def sft_records(trajectories: Sequence[Trajectory], book: PromptBook) -> list[dict[str, Any]]:
    return [
        {"id": t.task_id, "conversations": _turns([*preamble(book, t.task_type), *t.messages])}
        for t in trajectories
    ]


def dpo_records(pairs: Sequence[PreferencePair], book: PromptBook) -> list[dict[str, Any]]:
    return [
        {
            "id": p.task_id,
            "prompt": _turns([*preamble(book, p.task_type), *p.prompt]),
            "chosen": _turns(p.chosen),
            "rejected": _turns(p.rejected),
        }
        for p in pairs
    ]


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def read_sft_conversations(path: Path) -> list[list[Message]]:
    """Messages of an ETO SFT file (for users who bring ETO's own expert data)."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    out = []
    for i, rec in enumerate(records):
        try:
            out.append([Message(_FROM_ETO[t["from"]], t["value"]) for t in rec["conversations"]])
        except (KeyError, TypeError) as exc:
            raise DataFormatError(f"{path}: record {i} ({rec.get('id', '?')}) is malformed: {exc!r}") from exc
    return out
