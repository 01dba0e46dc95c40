"""The baselines' data builders on hand-made episodes: which sampled episodes RFT adds, the
self-play pairs (best against worst, ties dropped), and Best-of-N's maximum over samples."""

from __future__ import annotations

from eto_assets.data.baselines import best_of_n, rft_additions, selfplay_pairs
from eto_assets.data.schemas import Message, Trajectory


def episode(task: str, sample: int, reward: float, actions: list[str], *, task_type="find-animal", **meta):
    messages = [Message("user", f"Task {task}")]
    for i, action in enumerate(actions):
        messages.append(Message("assistant", f"Action: {action}"))
        if i < len(actions) - 1:
            messages.append(Message("user", f"Observation: after {action}"))
    return Trajectory(
        task, task_type, "train", messages, reward, reward >= 1.0, "agent", {"sample": sample, **meta}
    )


def test_best_of_n_takes_each_tasks_highest_reward_and_the_earliest_on_ties():
    samples = [
        episode("t2", 0, 0.3, ["a"]),
        episode("t1", 0, 0.5, ["a"]),
        episode("t1", 1, 0.9, ["b"]),
        episode("t1", 2, 0.9, ["c"]),
        episode("t2", 1, 0.1, ["b"]),
        episode("t2", 2, 1.0, ["c"], failed="jvm died"),  # an environment fault is not a score
    ]
    best = best_of_n(samples)
    assert [(t.task_id, t.reward, t.metadata["sample"]) for t in best] == [("t1", 0.9, 1), ("t2", 0.3, 0)]


def test_rft_adds_distinct_successes_that_do_not_repeat_the_expert():
    expert = episode("t1", 0, 1.0, ["go", "take"])
    expert.source = "expert"
    samples = [
        episode("t1", 0, 1.0, ["go", "take"]),  # the expert's own actions: nothing new
        episode("t1", 1, 1.0, ["look", "go", "take"], task_type="find-animal"),
        episode("t1", 2, 1.0, ["look", "go", "take"]),  # a duplicate of sample 1
        episode("t1", 3, 0.7, ["go"]),  # not a success
        episode("t2", 0, 1.0, ["x"], task_type="boil"),
        episode("t3", 0, 0.999, ["y"], task_type="boil"),
    ]
    kept, stats = rft_additions(samples, [expert])
    assert [(t.task_id, t.metadata["sample"]) for t in kept] == [("t1", 1), ("t2", 0)]
    assert (stats.sampled, stats.kept, stats.duplicates) == (6, 2, 2)
    assert stats.kept_per_type == {"find-animal": 1, "boil": 1}


def test_rft_at_least_expert_follows_each_tasks_expert_reward():
    expert = episode("w1", 0, 0.75, ["buy"])  # a WebShop expert scoring below 1
    samples = [episode("w1", 0, 0.8, ["search", "buy"]), episode("w1", 1, 0.5, ["buy now"])]
    kept, _ = rft_additions(samples, [expert], keep="at_least_expert")
    assert [t.metadata["sample"] for t in kept] == [0]
    assert rft_additions(samples, [expert], keep="success")[0] == []


def test_selfplay_pairs_best_against_worst_ties_dropped_and_cut():
    long_loser = episode("t1", 1, 0.0, [f"a{i}" for i in range(12)])
    samples = [
        episode("t1", 0, 1.0, ["go", "take"]),
        long_loser,
        episode("t1", 2, 0.5, ["go"]),
        episode("t2", 0, 0.4, ["x"]),
        episode("t2", 1, 0.4, ["y"]),  # every sample of t2 ties
    ]
    pairs, stats = selfplay_pairs(samples)
    assert stats.pairs == 1 and stats.dropped_ties == 1
    [pair] = pairs
    assert (pair.chosen_reward, pair.rejected_reward) == (1.0, 0.0)
    assert (pair.chosen_source, pair.rejected_source) == ("agent#0", "agent#1")
    assert pair.prompt == samples[0].messages[:1]
    assert len(pair.chosen) == 3 and len(pair.rejected) == 3 + 10  # cut to chosen + 5 rounds
    assert pair.rejected[-1].role == "assistant"
    [whole] = selfplay_pairs(samples, truncate_rejected=False)[0]
    assert whole.rejected == long_loser.messages[1:]
