"""ETO's preference-pair rules (trajectory-level contrast).

For each explored trajectory, take the expert trajectory of the same instruction; the higher
reward is chosen; equal rewards are dropped (no contrast to learn from); the rejected trajectory
is cut to the chosen one's length plus 10 messages; both must end on an agent turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eto_assets.data.schemas import Message, PreferencePair, Trajectory

REJECTED_EXTRA_MESSAGES = 10


@dataclass
class PairStats:
    pairs: int = 0
    dropped_ties: int = 0
    dropped_no_expert: int = 0
    dropped_empty: int = 0
    agent_chosen: int = 0


def _end_on_agent(messages: list[Message]) -> list[Message]:
    out = list(messages)
    while out and out[-1].role != "assistant":
        out.pop()
    return out


def make_pair(expert: Trajectory, agent: Trajectory) -> PreferencePair | None:
    """One pair from an expert and an explored trajectory of the same task; None on a tie."""
    if expert.task_id != agent.task_id:
        raise ValueError(f"pair of different tasks: {expert.task_id} vs {agent.task_id}")
    if expert.reward == agent.reward:
        return None
    chosen, rejected = (expert, agent) if expert.reward > agent.reward else (agent, expert)
    prompt = chosen.messages[:1]
    if rejected.messages[:1] != prompt:
        raise ValueError(
            f"{expert.task_id}: expert and agent trajectories start from different task messages"
        )
    chosen_turns = _end_on_agent(chosen.messages[1:])
    rejected_turns = _end_on_agent(rejected.messages[1 : 1 + len(chosen_turns) + REJECTED_EXTRA_MESSAGES])
    if not chosen_turns or not rejected_turns:
        return None
    return PreferencePair(
        task_id=expert.task_id,
        task_type=expert.task_type,
        prompt=prompt,
        chosen=chosen_turns,
        rejected=rejected_turns,
        chosen_reward=chosen.reward,
        rejected_reward=rejected.reward,
        chosen_source=chosen.source,
        rejected_source=rejected.source,
    )


def build_preference_pairs(
    experts: Iterable[Trajectory], explored: Sequence[Trajectory]
) -> tuple[list[PreferencePair], PairStats]:
    by_task = {t.task_id: t for t in experts}
    stats = PairStats()
    pairs: list[PreferencePair] = []
    for agent in explored:
        expert = by_task.get(agent.task_id)
        if expert is None:
            stats.dropped_no_expert += 1
            continue
        if expert.reward == agent.reward:
            stats.dropped_ties += 1
            continue
        pair = make_pair(expert, agent)
        if pair is None:
            stats.dropped_empty += 1
            continue
        stats.agent_chosen += pair.chosen_source != "expert"
        pairs.append(pair)
    stats.pairs = len(pairs)
    return pairs, stats
