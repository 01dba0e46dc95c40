"""ETO's ReAct turns ("Thought: ...\\nAction: ...") as data: the action a turn sends, the stop strings."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ACTION = re.compile(r"Action\s*:\s*(.+)", re.IGNORECASE)
_THOUGHT = re.compile(r"Thought\s*:\s*(.*?)(?=\n\s*Action\s*:|\Z)", re.IGNORECASE | re.DOTALL)
# ETO's stop list, verbatim (eval_agent/agents/base.py:14, passed as ``stop=`` in
# openai_lm_agent.py:37 and fastchat_agent.py:62-67): the agent must not write the environment's
# reply (``\nObservation:``), the next task (``\nTask:``) or the prompt's section rule (``\n---``).
# Each needs its leading newline, as in ETO: an "Observation:" inside the action line is not a
# hallucinated turn, and ETO keeps it too (tests/data/test_react.py).
STOP_STRINGS = ("\nObservation:", "\nTask:", "\n---")


@dataclass(frozen=True)
class ParsedAnswer:
    thought: str | None
    action: str  # "" when the answer holds no parsable action


def truncate_at_stop(text: str, stops: tuple[str, ...] = STOP_STRINGS) -> str:
    """Cut a generation at the first stop string, so a model that hallucinates the
    environment's reply never gets to act on it."""
    cut = len(text)
    for stop in stops:
        idx = text.find(stop)
        if idx != -1:
            cut = min(cut, idx)
    return text[:cut]


def parse_answer(text: str) -> ParsedAnswer:
    """Take the first ``Action:`` line; the optional thought is what precedes it."""
    text = truncate_at_stop(text).strip()
    match = _ACTION.search(text)
    if not match:
        return ParsedAnswer(thought=None, action="")
    action = match.group(1).strip().strip("`").strip()
    thought_match = _THOUGHT.search(text[: match.start()] + "\nAction:")
    thought = thought_match.group(1).strip() if thought_match else None
    return ParsedAnswer(thought=thought or None, action=action)
