"""What the paper's baselines and self-play methods make of sampled episodes.

* Best-of-N scores a held-out task by the best of its N sampled episodes.
* RFT (rejection-sampling fine-tuning) keeps the sampled episodes that succeed (reward 1, or at
  least the task's expert reward) and adds them to the expert data for a new SFT from the base model;
  self-play RFT keeps them alone.
* Self-play ETO has no expert: it pairs two sampled episodes of one task, the best against the
  worst, and drops the task when they tie (no contrast to learn from).

Episodes are grouped by ``task_id``; the samples of a task are told apart by ``metadata["sample"]``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from eto_assets.data.pairs import REJECTED_EXTRA_MESSAGES, PairStats
from eto_assets.data.schemas import Message, PreferencePair, Trajectory

KeepRule = Literal["success", "at_least_expert"]
SUCCESS_REWARD = 1.0 - 1e-6


def by_task(episodes: Iterable[Trajectory]) -> dict[str, list[Trajectory]]:
    """Episodes grouped by task, each group in sample order; failed episodes (an environment that
    died) say nothing about the policy and are left out."""
    groups: dict[str, list[Trajectory]] = defaultdict(list)
    for t in episodes:
        if not t.metadata.get("failed"):
            groups[t.task_id].append(t)
    return {k: sorted(v, key=lambda t: int(t.metadata.get("sample", 0))) for k, v in groups.items()}


def best_of_n(samples: Iterable[Trajectory]) -> list[Trajectory]:
    """Per task, the sample with the highest reward (the earliest sample on ties), in task order."""
    return [max(group, key=lambda t: t.reward) for _, group in sorted(by_task(samples).items())]


def _actions(t: Trajectory) -> tuple[str, ...]:
    return tuple(m.content for m in t.messages if m.role == "assistant")


@dataclass
class RFTStats:
    sampled: int = 0
    kept: int = 0
    duplicates: int = 0  # kept episodes that repeat another kept episode (or the expert) of the task
    kept_per_type: dict[str, int] = field(default_factory=dict)


def rft_additions(
    samples: Iterable[Trajectory],
    experts: Iterable[Trajectory] = (),
    keep: KeepRule = "success",
) -> tuple[list[Trajectory], RFTStats]:
    """The sampled episodes RFT trains on besides the experts: those that succeed (``success``:
    reward 1) or reach the task's expert reward (``at_least_expert``; without an expert, reward 1),
    each distinct action sequence of a task once and none that repeats the task's expert."""
    expert_of = {t.task_id: t for t in experts}
    stats = RFTStats()
    kept: list[Trajectory] = []
    for task_id, group in sorted(by_task(samples).items()):
        stats.sampled += len(group)
        expert = expert_of.get(task_id)
        bar = expert.reward if keep == "at_least_expert" and expert is not None else SUCCESS_REWARD
        seen = {_actions(expert)} if expert is not None else set()
        for t in group:
            if t.reward < min(bar, SUCCESS_REWARD) or len(t.messages) < 2:
                continue
            if _actions(t) in seen:
                stats.duplicates += 1
                continue
            seen.add(_actions(t))
            kept.append(t)
            stats.kept_per_type[t.task_type] = stats.kept_per_type.get(t.task_type, 0) + 1
    stats.kept = len(kept)
    return kept, stats


def _ending_on_agent(messages: Sequence[Message]) -> list[Message]:
    return list(messages[:-1] if messages and messages[-1].role == "user" else messages)


def selfplay_pairs(
    samples: Iterable[Trajectory], truncate_rejected: bool = True
) -> tuple[list[PreferencePair], PairStats]:
    """One pair per task: its best sampled episode chosen over its worst; a task whose samples all
    score the same is dropped (a tie). The rejected side is cut to the chosen's length plus 5 rounds
    where ETO cuts rejected trajectories (``truncate_rejected``)."""
    stats = PairStats()
    pairs: list[PreferencePair] = []
    for _, group in sorted(by_task(samples).items()):
        best = max(group, key=lambda t: t.reward)
        worst = min(group, key=lambda t: t.reward)
        if best.reward == worst.reward:
            stats.dropped_ties += 1
            continue
        chosen = _ending_on_agent(best.messages)[1:]
        rejected = _ending_on_agent(worst.messages)[1:]
        if truncate_rejected:
            rejected = rejected[: len(chosen) + REJECTED_EXTRA_MESSAGES]
        if not chosen or not rejected or chosen[-1].role != "assistant" or rejected[-1].role != "assistant":
            stats.dropped_empty += 1
            continue
        pairs.append(
            PreferencePair(
                task_id=best.task_id,
                task_type=best.task_type,
                prompt=best.messages[:1],
                chosen=chosen,
                rejected=rejected,
                chosen_reward=best.reward,
                rejected_reward=worst.reward,
                chosen_source=f"{best.source}#{best.metadata.get('sample', 0)}",
                rejected_source=f"{worst.source}#{worst.metadata.get('sample', 0)}",
            )
        )
    stats.pairs = len(pairs)
    return pairs, stats


def per_type_counts(trajectories: Iterable[Trajectory]) -> Mapping[str, int]:
    counts: dict[str, int] = {}
    for t in trajectories:
        counts[t.task_type] = counts.get(t.task_type, 0) + 1
    return dict(sorted(counts.items()))
