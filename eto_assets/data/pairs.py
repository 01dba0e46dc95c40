"""ETO's preference-pair rules (trajectory-level contrast).

For each explored trajectory, take the expert trajectory of the same instruction; the higher
reward is chosen; equal rewards are dropped (no contrast to learn from). The expert's reward is
its own record's (WebShop's experts can score below 1, so the agent's trajectory is sometimes the
chosen one). When the expert is chosen, the agent's (rejected) trajectory is cut to the expert's
length plus 10 messages (5 rounds), except on ALFWorld, where ETO keeps it whole; an expert that
loses is never cut. A trailing observation of the agent's trajectory is dropped, and a pair whose
sides do not both end on an agent turn is dropped, as in ETO's ``construct_preference.py``. The
prompt is the chosen side's task turn (ETO's lines 90 and 98); an expert whose task text differs from
the agent's (an imported file) still pairs, and the stats count such pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eto_assets.data.schemas import Message, PreferencePair, Trajectory

REJECTED_EXTRA_MESSAGES = 10
# Benchmarks on which ETO keeps the rejected trajectory whole (its ALFWorld pair builder).
UNTRUNCATED_TASKS = frozenset({"alfworld"})


def truncates_rejected(task: str) -> bool:
    """Whether ``task``'s rejected agent trajectories are cut to expert + 10 messages."""
    return task not in UNTRUNCATED_TASKS


@dataclass
class PairStats:
    pairs: int = 0
    dropped_ties: int = 0
    dropped_no_expert: int = 0
    dropped_empty: int = 0
    agent_chosen: int = 0
    task_text_differs: int = 0  # pairs whose expert and agent task turns differ (kept, as in ETO)


def _drop_trailing_observation(messages: list[Message]) -> list[Message]:
    return messages[:-1] if messages and messages[-1].role == "user" else messages


def make_pair(expert: Trajectory, agent: Trajectory, truncate_rejected: bool = True) -> PreferencePair | None:
    """One pair from an expert and an explored trajectory of the same task; None on a tie or when a
    side does not end on an agent turn."""
    if expert.task_id != agent.task_id:
        raise ValueError(f"pair of different tasks: {expert.task_id} vs {agent.task_id}")
    if expert.reward == agent.reward:
        return None
    expert_won = expert.reward > agent.reward
    chosen, rejected = (expert, agent) if expert_won else (agent, expert)
    # The prompt is the chosen side's task turn, as in ETO's construct_preference.py: an imported
    # expert's task text may differ from the engine's (ETO's file, another engine release), and
    # ETO pairs them anyway, so a differing text does not stop the pair.
    prompt = chosen.messages[:1]
    agent_turns = _drop_trailing_observation(agent.messages)[1:]
    expert_turns = expert.messages[1:]
    if expert_won:
        chosen_turns, rejected_turns = expert_turns, agent_turns
        if truncate_rejected:
            rejected_turns = rejected_turns[: len(chosen_turns) + REJECTED_EXTRA_MESSAGES]
    else:
        chosen_turns, rejected_turns = agent_turns, expert_turns
    for turns in (chosen_turns, rejected_turns):
        if not turns or turns[-1].role != "assistant":
            return None
    return PreferencePair(
        task_id=expert.task_id,
        task_type=expert.task_type,
        prompt=prompt,
        chosen=list(chosen_turns),
        rejected=list(rejected_turns),
        chosen_reward=chosen.reward,
        rejected_reward=rejected.reward,
        chosen_source=chosen.source,
        rejected_source=rejected.source,
    )


def build_preference_pairs(
    experts: Iterable[Trajectory], explored: Sequence[Trajectory], truncate_rejected: bool = True
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
        pair = make_pair(expert, agent, truncate_rejected)
        if pair is None:
            stats.dropped_empty += 1
            continue
        stats.agent_chosen += pair.chosen_source != "expert"
        stats.task_text_differs += expert.messages[:1] != agent.messages[:1]
        pairs.append(pair)
    stats.pairs = len(pairs)
    return pairs, stats
