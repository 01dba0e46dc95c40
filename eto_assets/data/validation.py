"""Structural checks shared by every reader and writer of chat-shaped trajectories.

A trajectory that a chat model is trained on must start with the user, alternate strictly and end
on the assistant: a trainer that formats turns by position (as FastChat does) silently mislabels
every turn after a slip, and a trailing user turn would be trained on as if the agent had said it.
These checks return problems instead of raising so that a reader can collect every problem of a
file and report them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


class Message(Protocol):
    """A chat turn as these checks read it (``schemas.Message`` is one; the readers in ``schemas``
    use these checks, so this module does not import it)."""

    role: str
    content: str


ROLES = ("user", "assistant")


@dataclass(frozen=True)
class TurnProblem:
    """One problem of a conversation: which turn (None for the whole conversation), whether it is
    about the turn's role or its text, and why."""

    turn: int | None
    aspect: Literal["role", "text", "conversation"]
    reason: str

    def __str__(self) -> str:
        return self.reason if self.turn is None else f"turn {self.turn}: {self.reason}"


def check_conversation(
    messages: Sequence[Message],
    *,
    first_role: str = "user",
    last_role: str | None = "assistant",
    check_text: bool = True,
) -> list[TurnProblem]:
    """Structured problems of a conversation (see :func:`validate_conversation` for the rules);
    readers use the turn index and aspect to name the offending field of their own format.
    ``last_role`` None leaves the ending unchecked; ``check_text`` False leaves empty turns alone
    (a policy may answer with nothing)."""
    for role in (first_role, last_role):
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if not messages:
        return [TurnProblem(None, "conversation", "empty conversation")]
    problems: list[TurnProblem] = []
    roles_ok = True
    for i, msg in enumerate(messages):
        if msg.role not in ROLES:
            problems.append(TurnProblem(i, "role", f"unknown role {msg.role!r}"))
            roles_ok = False
        if not isinstance(msg.content, str) or (check_text and not msg.content.strip()):
            problems.append(TurnProblem(i, "text", "empty text"))
    if not roles_ok:
        return problems
    if messages[0].role != first_role:
        problems.append(TurnProblem(0, "role", f"must be from the {first_role}, got {messages[0].role}"))
    for i in range(1, len(messages)):
        if messages[i].role == messages[i - 1].role:
            problems.append(
                TurnProblem(i, "role", f"two {messages[i].role} turns in a row (turns must alternate)")
            )
    last = len(messages) - 1
    if last_role is not None and messages[-1].role != last_role:
        problems.append(
            TurnProblem(last, "role", f"last turn must be from the {last_role}, got {messages[-1].role}")
        )
    return problems


def validate_conversation(
    messages: Sequence[Message],
    *,
    first_role: str = "user",
    last_role: str = "assistant",
) -> list[str]:
    """Problems of a conversation as text; an empty list means it is well formed.

    Default rules: at least one turn, the first from the user, roles strictly alternating, the last
    from the assistant, and no turn empty or whitespace-only. ``first_role`` / ``last_role`` let a
    caller check a fragment (a DPO prompt ends on the user; a chosen continuation starts on the
    assistant). Each problem names the turn index (``turn 3: ...``).
    """
    return [str(p) for p in check_conversation(messages, first_role=first_role, last_role=last_role)]


def trajectory_problems(messages: Sequence[Message]) -> list[TurnProblem]:
    """What every reader of a trajectory file refuses: turns that do not start with the user's task
    message or do not alternate, or an ending on the user after the agent has acted (an episode that
    never got to act is the task message alone). A trainer that labels turns by position would
    train on swapped roles without a word."""
    ending = "assistant" if len(messages) > 1 else None
    return check_conversation(messages, last_role=ending, check_text=False)


def pair_problems(
    prompt: Sequence[Message], chosen: Sequence[Message], rejected: Sequence[Message]
) -> list[str]:
    """A preference pair as DPO reads it: the prompt from the user to the user, each side from the
    agent to the agent, alternating."""
    problems = [f"prompt {p}" for p in check_conversation(prompt, last_role="user", check_text=False)]
    for name, side in (("chosen", chosen), ("rejected", rejected)):
        problems += [
            f"{name} {p}" for p in check_conversation(side, first_role="assistant", check_text=False)
        ]
    return problems
