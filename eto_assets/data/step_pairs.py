"""Step-level preference pairs: one action against another from the same prefix of an expert
trajectory (ETO's step-wise and mixture variants, StepAgent, IPR).

A *branch* is an episode that replays an expert's first t-1 turns and lets the policy act from
step t (its record holds ``metadata["forced_steps"]`` = t-1); a *proposal* is the same without the
environment: the policy's single turn at step t of the expert's own prefix (StepAgent's
inspection). A step pair's prompt is the task turn plus the t-1 rounds before step t; each side is
one agent turn. Actions are compared by what the environment receives (the parsed ``Action:``), so
two turns that differ only in their thought are the same action and never a pair.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from eto_assets.data.pairs import REJECTED_EXTRA_MESSAGES, make_pair
from eto_assets.data.react import parse_answer
from eto_assets.data.schemas import Message, PreferencePair, Trajectory


def agent_turns(t: Trajectory) -> list[str]:
    return [m.content for m in t.messages if m.role == "assistant"]


def same_action(a: str, b: str) -> bool:
    """Whether two agent turns send the same action (their thoughts may differ)."""
    return parse_answer(a).action.strip() == parse_answer(b).action.strip()


def branch_steps(expert: Trajectory, steps: int | None, seed: int = 0) -> list[int]:
    """The 1-based steps of ``expert`` to branch from: all of them (``steps`` None), or step 1 (the
    policy's whole episode) plus ``steps - 1`` others drawn with a seed of the run and the task, so a
    rerun branches from the same steps."""
    n = len(agent_turns(expert))
    if steps is None or steps >= n:
        return list(range(1, n + 1))
    rng = random.Random(f"{seed}\x1f{expert.task_id}")
    return [1, *sorted(rng.sample(range(2, n + 1), max(0, steps - 1)))]


def forced_prefix(expert: Trajectory, step: int) -> tuple[str, ...]:
    """The expert's turns before ``step`` (1-based): what a branch from ``step`` replays."""
    return tuple(agent_turns(expert)[: step - 1])


def branch_step(t: Trajectory) -> int:
    """The step (1-based) at which the policy took over in a branch or proposal record."""
    return int(t.metadata.get("forced_steps", 0)) + 1


def _prefix_and_turn(t: Trajectory) -> tuple[list[Message], Message] | None:
    """A branch's prompt (task turn and the replayed rounds) and the policy's first turn; None when
    the episode ended before the policy acted (the replayed prefix finished it, or it failed)."""
    cut = 1 + 2 * (branch_step(t) - 1)
    if t.metadata.get("failed") or len(t.messages) <= cut or t.messages[cut].role != "assistant":
        return None
    return list(t.messages[:cut]), t.messages[cut]


def _step_pair(
    prompt: list[Message],
    expert_turn: str,
    policy_turn: str,
    expert_won: bool,
    t: Trajectory,
    rewards: tuple[float, float],
) -> PreferencePair:
    step = branch_step(t)
    sides = [("expert", expert_turn), ("agent", policy_turn)]
    (chosen_src, chosen), (rejected_src, rejected) = sides if expert_won else sides[::-1]
    chosen_reward, rejected_reward = rewards if expert_won else rewards[::-1]
    return PreferencePair(
        task_id=t.task_id,
        task_type=t.task_type,
        prompt=prompt,
        chosen=[Message("assistant", chosen)],
        rejected=[Message("assistant", rejected)],
        chosen_reward=chosen_reward,
        rejected_reward=rejected_reward,
        chosen_source=f"{chosen_src}@step{step}",
        rejected_source=f"{rejected_src}@step{step}",
    )


@dataclass
class StepPairStats:
    branches: int = 0  # branch or proposal records read
    pairs: int = 0
    dropped_ties: int = 0
    dropped_same_action: int = 0  # the policy sent the expert's action: no contrast at that step
    dropped_no_turn: int = 0  # the episode ended (or failed) before the policy acted
    dropped_no_expert: int = 0
    dropped_below_tau: int = 0  # IPR: the expert's step value does not beat the policy's by tau
    dropped_outcome_not_worse: int = 0  # IPR: the policy's episode did not end worse than the expert's
    agent_chosen: int = 0

    def metrics(self, prefix: str = "step_pairs") -> dict[str, float]:
        return {f"{prefix}_{k}": float(v) for k, v in self.__dict__.items()}


def _experts_by_task(experts: Iterable[Trajectory]) -> dict[str, Trajectory]:
    return {t.task_id: t for t in experts}


def _policy_turn(
    t: Trajectory, experts: Mapping[str, Trajectory], stats: StepPairStats
) -> tuple[Trajectory, list[Message], str, str] | None:
    """The expert, prompt, expert turn and policy turn of a branch or proposal at its step, or None
    (counted) when it has no expert, no policy turn or the policy sent the expert's action."""
    stats.branches += 1
    expert = experts.get(t.task_id)
    if expert is None:
        stats.dropped_no_expert += 1
        return None
    got = _prefix_and_turn(t)
    turns = agent_turns(expert)
    if got is None or branch_step(t) > len(turns):
        stats.dropped_no_turn += 1
        return None
    prompt, turn = got
    expert_turn = turns[branch_step(t) - 1]
    if same_action(expert_turn, turn.content):
        stats.dropped_same_action += 1
        return None
    return expert, prompt, expert_turn, turn.content


def eto_step_pairs(
    experts: Iterable[Trajectory], branches: Sequence[Trajectory]
) -> tuple[list[PreferencePair], StepPairStats]:
    """ETO's step-wise pairs: at step t the expert's action (whose value is the expert trajectory's
    final reward) against the policy's (whose value is the final reward of the episode it played on
    from there); the higher is chosen, ties dropped."""
    by_task = _experts_by_task(experts)
    stats = StepPairStats()
    pairs = []
    for t in branches:
        found = _policy_turn(t, by_task, stats)
        if found is None:
            continue
        expert, prompt, expert_turn, policy_turn = found
        if expert.reward == t.reward:
            stats.dropped_ties += 1
            continue
        expert_won = expert.reward > t.reward
        stats.agent_chosen += not expert_won
        pairs.append(_step_pair(prompt, expert_turn, policy_turn, expert_won, t, (expert.reward, t.reward)))
    stats.pairs = len(pairs)
    return pairs, stats


def stepagent_pairs(
    experts: Iterable[Trajectory], proposals: Sequence[Trajectory]
) -> tuple[list[PreferencePair], StepPairStats]:
    """StepAgent's reflection pairs (implicit reward): the expert's action preferred to the policy's
    differing proposal at the same step; identical actions give no pair."""
    by_task = _experts_by_task(experts)
    stats = StepPairStats()
    pairs = []
    for t in proposals:
        found = _policy_turn(t, by_task, stats)
        if found is None:
            continue
        expert, prompt, expert_turn, policy_turn = found
        pairs.append(_step_pair(prompt, expert_turn, policy_turn, True, t, (expert.reward, 0.0)))
    stats.pairs = len(pairs)
    return pairs, stats


def branch_trajectory_pairs(
    experts: Iterable[Trajectory], branches: Sequence[Trajectory], truncate_rejected: bool = True
) -> list[PreferencePair]:
    """ETO's trajectory-level pairs from the branches at step 1 (the policy's whole episode): the
    trajectory half of the mixture and of IPR."""
    by_task = _experts_by_task(experts)
    pairs = []
    for t in branches:
        expert = by_task.get(t.task_id)
        if expert is None or branch_step(t) != 1 or t.metadata.get("failed") or expert.reward == t.reward:
            continue
        pair = make_pair(expert, t, truncate_rejected)
        if pair is not None:
            pairs.append(pair)
    return pairs


def _pair_key(pair: PreferencePair) -> str:
    def side(messages: list[Message]) -> list[tuple[str, str]]:
        return [(m.role, m.content) for m in messages]

    return json.dumps([side(pair.prompt), side(pair.chosen), side(pair.rejected)])


def union_pairs(*groups: Iterable[PreferencePair]) -> tuple[list[PreferencePair], int]:
    """The pairs of every group in order, each distinct (prompt, chosen, rejected) once; also how
    many duplicates were left out (ETO's mixture: trajectory-level and step-level pairs together)."""
    seen: set[str] = set()
    out: list[PreferencePair] = []
    duplicates = 0
    for group in groups:
        for pair in group:
            key = _pair_key(pair)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            out.append(pair)
    return out, duplicates


# ------------------------------------------------------------------------------------ IPR

EXPERT_SIDE, AGENT_SIDE = "expert", "agent"


def value_branch(step: int, side: str) -> str:
    """The branch name of the Monte-Carlo episodes that value ``side``'s action at ``step``."""
    return f"value{step}-{side}"


def step_values(episodes: Iterable[Trajectory]) -> dict[tuple[str, str], float]:
    """Mean final reward per (task, value branch) over its Monte-Carlo continuations; failed
    episodes say nothing about the action and are left out."""
    sums: dict[tuple[str, str], list[float]] = {}
    for t in episodes:
        if t.metadata.get("failed"):
            continue
        sums.setdefault((t.task_id, t.metadata.get("branch", "")), []).append(t.reward)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def ipr_candidate(
    t: Trajectory, experts: Mapping[str, Trajectory], stats: StepPairStats
) -> tuple[Trajectory, list[Message], str, str] | None:
    """IPR's one eligibility rule, shared by the Monte-Carlo valuation (which values only these
    branches) and the pair builder: the policy took another action than the expert at the branch's
    step and its episode from there ended worse than the expert's. The expert, prompt, expert turn
    and policy turn; None (counted in ``stats``) otherwise."""
    found = _policy_turn(t, experts, stats)
    if found is None:
        return None
    if t.reward >= found[0].reward:
        stats.dropped_outcome_not_worse += 1
        return None
    return found


def ipr_pairs(
    experts: Iterable[Trajectory],
    branches: Sequence[Trajectory],
    values: Mapping[tuple[str, str], float],
    tau: float,
    truncate_rejected: bool = True,
) -> tuple[list[PreferencePair], list[PreferencePair], StepPairStats]:
    """IPR's pairs. Step level: at step t the expert's action chosen over the policy's when the
    expert's Monte-Carlo value beats the policy's by more than ``tau`` and the policy's own episode
    from there ended worse than the expert's. Trajectory level: the expert's remaining turns from
    step t against the policy's, when the policy's episode ended worse (the rejected side cut to the
    expert's length + 5 rounds where ETO cuts)."""
    by_task = _experts_by_task(experts)
    stats = StepPairStats()
    step_level: list[PreferencePair] = []
    trajectory_level: list[PreferencePair] = []
    for t in branches:
        found = ipr_candidate(t, by_task, stats)
        if found is None:
            continue
        expert, prompt, expert_turn, policy_turn = found
        trajectory_level.extend(_remainder_pair(expert, t, prompt, truncate_rejected))
        step = branch_step(t)
        expert_value = values.get((t.task_id, value_branch(step, EXPERT_SIDE)))
        agent_value = values.get((t.task_id, value_branch(step, AGENT_SIDE)))
        if expert_value is None or agent_value is None or expert_value - agent_value <= tau:
            stats.dropped_below_tau += 1
            continue
        step_level.append(_step_pair(prompt, expert_turn, policy_turn, True, t, (expert_value, agent_value)))
    stats.pairs = len(step_level)
    return step_level, trajectory_level, stats


def _remainder_pair(
    expert: Trajectory, branch: Trajectory, prompt: list[Message], truncate_rejected: bool
) -> list[PreferencePair]:
    cut = len(prompt)
    chosen = list(expert.messages[cut:])
    rejected = list(branch.messages[cut:])
    if rejected and rejected[-1].role == "user":
        rejected = rejected[:-1]
    if truncate_rejected:
        rejected = rejected[: len(chosen) + REJECTED_EXTRA_MESSAGES]
    if not chosen or not rejected or chosen[-1].role != "assistant" or rejected[-1].role != "assistant":
        return []
    step = branch_step(branch)
    return [
        PreferencePair(
            task_id=expert.task_id,
            task_type=expert.task_type,
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            chosen_reward=expert.reward,
            rejected_reward=branch.reward,
            chosen_source=f"expert@step{step}-end",  # the remaining turns, not the one step
            rejected_source=f"agent@step{step}-end",
        )
    ]
