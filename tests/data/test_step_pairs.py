"""The step-level pair builders (ETO step-wise and mixture, StepAgent, IPR) on hand-made episodes in
ETO's ReAct form: the task turn, then alternating agent ("Thought: ... Action: ...") and environment
("Observation: ...") turns, ending on the agent's turn.

A branch record replays the expert's first t-1 turns (with the observations the expert got) and
then holds the policy's own turns; its metadata says ``forced_steps`` = t-1, ``branch`` = "step{t}"
and ``sample``. A StepAgent proposal is the same prefix followed by the policy's single turn.
"""

from __future__ import annotations

import dataclasses

import pytest

from eto_assets.data.schemas import Message, PreferencePair, Trajectory
from eto_assets.data.step_pairs import (
    StepPairStats,
    branch_step,
    branch_steps,
    branch_trajectory_pairs,
    eto_step_pairs,
    forced_prefix,
    ipr_pairs,
    same_action,
    step_values,
    stepagent_pairs,
    union_pairs,
    value_branch,
)

TASK = "You are in the middle of a room. Your task is to: put a clean mug in cabinet."
E1 = "Thought: The mug is probably on a shelf.\nAction: go to shelf 1"
E2 = "Thought: There is the mug.\nAction: take mug 1 from shelf 1"
E3 = "Thought: Now I put it away.\nAction: put mug 1 in/on cabinet 1"
O1 = "Observation: On the shelf 1, you see a mug 1."
O2 = "Observation: You pick up the mug 1 from the shelf 1."
P_DRAWER = "Thought: Maybe it is in a drawer.\nAction: open drawer 1"
P_LOOK = "Thought: I should look around.\nAction: look"


def user(text: str) -> Message:
    return Message("user", text)


def agent(text: str) -> Message:
    return Message("assistant", text)


def expert_of(task_id: str = "t1", reward: float = 1.0, task: str = TASK) -> Trajectory:
    """The expert: three turns, two observations, ending on its last action."""
    messages = [user(task), agent(E1), user(O1), agent(E2), user(O2), agent(E3)]
    return Trajectory(task_id, "pick_clean", "train", messages, reward, reward >= 1.0, "expert")


def branch_of(
    expert: Trajectory,
    step: int,
    policy_turns: list[str],
    reward: float,
    *,
    sample: int = 0,
    trailing_observation: bool = False,
    **meta,
) -> Trajectory:
    """A branch from ``step``: the expert's first step-1 rounds replayed, then the policy's turns
    (each answered by an observation, the last one only with ``trailing_observation``)."""
    messages = list(expert.messages[: 1 + 2 * (step - 1)])
    for i, turn in enumerate(policy_turns):
        messages.append(agent(turn))
        if i < len(policy_turns) - 1 or trailing_observation:
            messages.append(user(f"Observation: policy step {step + i} seen"))
    return Trajectory(
        expert.task_id,
        expert.task_type,
        "train",
        messages,
        reward,
        reward >= 1.0,
        "agent",
        {"forced_steps": step - 1, "branch": f"step{step}", "sample": sample, **meta},
    )


def proposal_of(expert: Trajectory, step: int, turn: str) -> Trajectory:
    """StepAgent's proposal: the expert's prefix up to ``step`` and the policy's single turn."""
    return Trajectory(
        expert.task_id,
        expert.task_type,
        "train",
        [*expert.messages[: 1 + 2 * (step - 1)], agent(turn)],
        0.0,
        False,
        "agent",
        {"forced_steps": step - 1, "branch": f"step{step}", "sample": 0, "ended_by": "proposal"},
    )


def step_pair(
    expert: Trajectory,
    step: int,
    chosen: str,
    rejected: str,
    rewards: tuple[float, float],
    sources: tuple[str, str] = ("expert", "agent"),
) -> PreferencePair:
    """The pair a builder must produce, spelled out."""
    return PreferencePair(
        task_id=expert.task_id,
        task_type=expert.task_type,
        prompt=list(expert.messages[: 1 + 2 * (step - 1)]),
        chosen=[agent(chosen)],
        rejected=[agent(rejected)],
        chosen_reward=rewards[0],
        rejected_reward=rewards[1],
        chosen_source=f"{sources[0]}@step{step}",
        rejected_source=f"{sources[1]}@step{step}",
    )


# ------------------------------------------------------------------------ branch_steps, prefix


def long_expert(task_id: str, n: int) -> Trajectory:
    messages = [user(f"Task {task_id}")]
    for i in range(1, n + 1):
        messages.append(agent(f"Thought: step {i}.\nAction: act {i}"))
        messages.append(user(f"Observation: after act {i}"))
    messages.pop()
    return Trajectory(task_id, "t", "train", messages, 1.0, True, "expert")


@pytest.mark.parametrize("steps", [None, 6, 7, 100])
def test_branch_steps_all_when_none_or_at_least_the_length(steps):
    assert branch_steps(long_expert("a", 6), steps) == [1, 2, 3, 4, 5, 6]


def test_branch_steps_draws_step_one_and_distinct_others_reproducibly():
    expert = long_expert("a", 10)
    got = branch_steps(expert, 4, seed=3)
    assert got[0] == 1 and len(got) == 4
    assert got[1:] == sorted(got[1:]) and len(set(got)) == 4
    assert all(2 <= s <= 10 for s in got[1:])
    assert branch_steps(expert, 4, seed=3) == got  # a rerun branches from the same steps
    assert branch_steps(long_expert("a", 10), 4, seed=3) == got  # the same task in another record
    assert branch_steps(expert, 1) == [1]
    drawn = {tuple(branch_steps(long_expert(f"task{i}", 10), 3, seed=0)) for i in range(12)}
    assert len(drawn) > 1, "every task drew the same steps: the draw ignores the task"
    assert all(d[0] == 1 and 2 <= d[1] < d[2] <= 10 for d in drawn)
    seeds = {tuple(branch_steps(expert, 3, seed=s)) for s in range(12)}
    assert len(seeds) > 1, "every run seed drew the same steps"


def test_forced_prefix_is_the_experts_turns_before_the_step():
    expert = expert_of()
    assert forced_prefix(expert, 1) == ()
    assert forced_prefix(expert, 2) == (E1,)
    assert forced_prefix(expert, 3) == (E1, E2)
    assert forced_prefix(expert, 4) == (E1, E2, E3)


def test_branch_step_reads_forced_steps_and_defaults_to_step_one():
    expert = expert_of()
    assert branch_step(branch_of(expert, 3, [P_LOOK], 0.0)) == 3
    whole = branch_of(expert, 1, [P_LOOK], 0.0)
    del whole.metadata["forced_steps"]  # the rollout engine writes no forced_steps for step 1
    assert branch_step(whole) == 1


# ------------------------------------------------------------------------------- eto_step_pairs


def test_expert_wins_chosen_is_its_turn_at_the_step():
    expert = expert_of(reward=1.0)
    br = branch_of(expert, 2, [P_DRAWER, P_LOOK], 0.25)
    pairs, stats = eto_step_pairs([expert], [br])
    assert pairs == [
        PreferencePair(
            task_id="t1",
            task_type="pick_clean",
            prompt=[user(TASK), agent(E1), user(O1)],
            chosen=[agent(E2)],
            rejected=[agent(P_DRAWER)],
            chosen_reward=1.0,
            rejected_reward=0.25,
            chosen_source="expert@step2",
            rejected_source="agent@step2",
        )
    ]
    assert pairs[0].prompt == br.messages[:3]
    assert stats == StepPairStats(branches=1, pairs=1)


def test_policy_wins_reversed_and_counted():
    expert = expert_of(reward=0.5)  # a WebShop-like expert scoring below 1
    br = branch_of(expert, 3, [P_LOOK], 0.75)
    pairs, stats = eto_step_pairs([expert], [br])
    assert pairs == [step_pair(expert, 3, P_LOOK, E3, (0.75, 0.5), ("agent", "expert"))]
    assert pairs[0].prompt == [user(TASK), agent(E1), user(O1), agent(E2), user(O2)]
    assert stats == StepPairStats(branches=1, pairs=1, agent_chosen=1)


def test_step_one_prompt_is_the_task_turn_alone():
    expert = expert_of()
    pairs, _ = eto_step_pairs([expert], [branch_of(expert, 1, [P_LOOK, P_DRAWER], 0.0)])
    assert pairs == [step_pair(expert, 1, E1, P_LOOK, (1.0, 0.0))]
    assert pairs[0].prompt == [user(TASK)]


def test_drops_are_counted_by_reason():
    expert = expert_of(reward=1.0)
    other = expert_of("t2")
    same_action_other_thought = (
        "Thought: I will take it now, it is right there.\nAction: take mug 1 from shelf 1"
    )
    ended_in_prefix = branch_of(expert, 3, [], 1.0)  # the replayed prefix ended it: no policy turn
    ended_in_prefix.messages.pop()  # a record ends on the last (replayed) agent turn
    assert ended_in_prefix.messages == [user(TASK), agent(E1), user(O1), agent(E2)]
    branches = [
        branch_of(expert, 2, [P_DRAWER], 1.0),  # tie
        branch_of(expert, 2, [same_action_other_thought, P_LOOK], 0.0),  # rewards differ, action same
        ended_in_prefix,
        branch_of(expert, 2, [P_DRAWER], 0.0, failed="environment step 2 timed out"),
        branch_of(other, 2, [P_DRAWER], 0.0),  # no expert of t2 given
        branch_of(expert, 3, [P_DRAWER], 0.0, sample=1),  # kept
    ]
    pairs, stats = eto_step_pairs([expert], branches)
    assert pairs == [step_pair(expert, 3, E3, P_DRAWER, (1.0, 0.0))]
    assert stats == StepPairStats(
        branches=6,
        pairs=1,
        dropped_ties=1,
        dropped_same_action=1,
        dropped_no_turn=2,
        dropped_no_expert=1,
    )
    assert stats.metrics()["step_pairs_dropped_no_turn"] == 2.0


def test_branch_stopping_right_after_the_prefix_observation_has_no_turn():
    expert = expert_of()
    br = branch_of(expert, 2, [], 0.0)  # task, E1, O1: nothing of the policy
    assert br.messages == [user(TASK), agent(E1), user(O1)]
    pairs, stats = eto_step_pairs([expert], [br])
    assert pairs == [] and stats.dropped_no_turn == 1


def test_branch_past_the_experts_length_has_no_turn():
    expert = expert_of()
    br = branch_of(expert, 4, [], 0.0)  # forced all three expert turns
    br.messages += [user("Observation: Nothing happens."), agent(P_LOOK)]
    pairs, stats = eto_step_pairs([expert], [br])
    assert pairs == [] and stats == StepPairStats(branches=1, dropped_no_turn=1)


def test_messy_real_text():
    """Extra whitespace in the task turn is kept verbatim in the prompt; a thought-less turn, one with
    trailing spaces or another capitalisation of "Action:" send the expert's action; only a really
    different action makes a pair, and its text is the policy's, untouched."""
    task = "  You are in the middle of a room.\n\n   Your task is to:  put a clean mug in cabinet. \n"
    expert = expert_of(task=task)
    same = [
        "Action: take mug 1 from shelf 1",
        "Thought: the mug!\nAction: take mug 1 from shelf 1   ",
        "thought: got it\nACTION :  take mug 1 from shelf 1\n",
        "Action: `take mug 1 from shelf 1`",
        "Thought: ok\nAction: take mug 1 from shelf 1\nObservation: You pick up the mug 1.",
    ]
    assert all(same_action(E2, turn) for turn in same)
    differing = "Action:   take mug 2 from shelf 1  "
    assert not same_action(E2, differing)
    branches = [branch_of(expert, 2, [turn], 0.0, sample=i) for i, turn in enumerate([*same, differing])]
    pairs, stats = eto_step_pairs([expert], branches)
    assert stats == StepPairStats(branches=6, pairs=1, dropped_same_action=5)
    assert pairs == [step_pair(expert, 2, E2, differing, (1.0, 0.0))]
    assert pairs[0].prompt[0] == user(task)


# ------------------------------------------------------------------------------ stepagent_pairs


def test_stepagent_prefers_the_expert_over_a_differing_proposal():
    expert = expert_of(reward=0.5)  # chosen even when its own episode scored below 1
    proposals = [
        proposal_of(expert, 1, "Thought: start with the shelf.\nAction: go to shelf 1"),  # same action
        proposal_of(expert, 2, P_DRAWER),
        proposal_of(expert, 3, "Action: put mug 1 in/on cabinet 1 "),  # same action, no thought
        proposal_of(expert, 3, P_LOOK),
    ]
    pairs, stats = stepagent_pairs([expert], proposals)
    assert pairs == [
        step_pair(expert, 2, E2, P_DRAWER, (0.5, 0.0)),
        step_pair(expert, 3, E3, P_LOOK, (0.5, 0.0)),
    ]
    assert stats == StepPairStats(branches=4, pairs=2, dropped_same_action=2)


def test_stepagent_without_expert_is_counted():
    pairs, stats = stepagent_pairs([], [proposal_of(expert_of(), 2, P_DRAWER)])
    assert pairs == [] and stats == StepPairStats(branches=1, dropped_no_expert=1)


# ---------------------------------------------------------------------------------- union_pairs


def test_union_keeps_order_and_leaves_out_exact_duplicates():
    expert = expert_of()
    a = step_pair(expert, 2, E2, P_DRAWER, (1.0, 0.0))
    b = step_pair(expert, 3, E3, P_LOOK, (1.0, 0.0))
    other_rejected = step_pair(expert, 2, E2, P_LOOK, (1.0, 0.0))
    other_chosen = step_pair(expert, 2, E3, P_DRAWER, (1.0, 0.0))
    other_prompt = dataclasses.replace(a, prompt=[user(TASK)])
    pairs, duplicates = union_pairs(
        [a, b], [dataclasses.replace(a), other_rejected], [other_chosen, b, other_prompt]
    )
    assert pairs == [a, b, other_rejected, other_chosen, other_prompt]
    assert duplicates == 2
    assert union_pairs() == ([], 0)


def test_union_of_a_one_turn_episodes_trajectory_and_step_pair_is_one_pair():
    """ETO's mixture: a one-turn expert against a one-turn step-1 branch gives the same pair at both
    levels (only the sources differ); the union keeps the first (trajectory-level) one."""
    expert = Trajectory("t1", "pick_clean", "train", [user(TASK), agent(E1)], 1.0, True, "expert")
    br = branch_of(expert, 1, [P_LOOK], 0.0)
    trajectory_level = branch_trajectory_pairs([expert], [br])
    step_level, _ = eto_step_pairs([expert], [br])
    assert [p.chosen_source for p in trajectory_level] == ["expert"]
    assert [p.chosen_source for p in step_level] == ["expert@step1"]
    pairs, duplicates = union_pairs(trajectory_level, step_level)
    assert pairs == trajectory_level and duplicates == 1


# ---------------------------------------------------------------------- branch_trajectory_pairs


def test_only_step_one_branches_give_trajectory_pairs():
    expert = expert_of()
    policy = [P_LOOK, P_DRAWER, "Thought: close it.\nAction: close drawer 1"]
    whole = branch_of(expert, 1, policy, 0.0)
    pairs = branch_trajectory_pairs(
        [expert],
        [
            whole,
            branch_of(expert, 2, policy, 0.0),
            branch_of(expert, 3, policy, 0.0),
            branch_of(expert, 1, policy, 1.0, sample=1),  # tie
            branch_of(expert, 1, policy, 0.0, sample=2, failed="jvm died"),
            branch_of(expert_of("t2"), 1, policy, 0.0),  # no expert
        ],
    )
    assert pairs == [
        PreferencePair(
            task_id="t1",
            task_type="pick_clean",
            prompt=[user(TASK)],
            chosen=expert.messages[1:],
            rejected=whole.messages[1:],
            chosen_reward=1.0,
            rejected_reward=0.0,
            chosen_source="expert",
            rejected_source="agent",
        )
    ]


def test_trajectory_pair_rejected_side_whole_on_alfworld_and_cut_elsewhere():
    expert = expert_of()  # 5 messages after the task turn
    long_loser = branch_of(
        expert, 1, [f"Thought: try {i}.\nAction: go to drawer {i}" for i in range(20)], 0.0
    )
    assert len(long_loser.messages) - 1 == 39
    [whole] = branch_trajectory_pairs([expert], [long_loser], truncate_rejected=False)
    assert whole.rejected == long_loser.messages[1:]
    [cut] = branch_trajectory_pairs([expert], [long_loser], truncate_rejected=True)
    assert cut.rejected == long_loser.messages[1 : 1 + 5 + 10]
    assert len(cut.rejected) == 15 and cut.rejected[-1] == agent("Thought: try 7.\nAction: go to drawer 7")
    assert cut.chosen == whole.chosen == expert.messages[1:]


def test_trajectory_pair_with_a_winning_policy_never_cuts_the_expert():
    expert = expert_of(reward=0.5)
    winner = branch_of(expert, 1, [P_LOOK, E1, E2, E3], 1.0, trailing_observation=True)
    [pair] = branch_trajectory_pairs([expert], [winner], truncate_rejected=True)
    assert (pair.chosen_source, pair.rejected_source) == ("agent", "expert")
    assert (pair.chosen_reward, pair.rejected_reward) == (1.0, 0.5)
    assert pair.chosen == winner.messages[1:-1]  # its trailing observation dropped
    assert pair.rejected == expert.messages[1:]


# ------------------------------------------------------------------------------------------- IPR


def value_episode(task_id: str, step: int, side: str, sample: int, reward: float, **meta) -> Trajectory:
    return Trajectory(
        task_id,
        "pick_clean",
        "train",
        [user(TASK), agent(E1)],
        reward,
        reward >= 1.0,
        "agent",
        {"sample": sample, "branch": value_branch(step, side), "forced_steps": step, **meta},
    )


def test_step_values_are_means_over_samples_without_failed_episodes():
    episodes = [
        value_episode("t1", 2, "expert", 0, 1.0),
        value_episode("t1", 2, "expert", 1, 0.5),
        value_episode("t1", 2, "expert", 2, 0.0, failed="environment reset timed out"),
        value_episode("t1", 2, "agent", 0, 0.25),
        value_episode("t1", 2, "agent", 1, 0.25),
        value_episode("t1", 3, "agent", 0, 1.0),
        value_episode("t2", 2, "expert", 0, 0.0),
        value_episode("t2", 2, "agent", 0, 1.0, failed="jvm died"),  # its only sample failed
    ]
    assert value_branch(2, "expert") == "value2-expert"
    assert step_values(episodes) == {
        ("t1", "value2-expert"): 0.75,
        ("t1", "value2-agent"): 0.25,
        ("t1", "value3-agent"): 1.0,
        ("t2", "value2-expert"): 0.0,
    }


def values_at(step: int, expert_value: float, agent_value: float, task_id: str = "t1"):
    return {
        (task_id, value_branch(step, "expert")): expert_value,
        (task_id, value_branch(step, "agent")): agent_value,
    }


def remainder_pair(expert: Trajectory, br: Trajectory, step: int, rejected: list[Message]) -> PreferencePair:
    return PreferencePair(
        task_id=expert.task_id,
        task_type=expert.task_type,
        prompt=list(expert.messages[: 1 + 2 * (step - 1)]),
        chosen=list(expert.messages[1 + 2 * (step - 1) :]),
        rejected=rejected,
        chosen_reward=expert.reward,
        rejected_reward=br.reward,
        chosen_source=f"expert@step{step}-end",
        rejected_source=f"agent@step{step}-end",
    )


def test_ipr_keeps_a_step_pair_whose_value_gap_beats_tau():
    expert = expert_of()
    br = branch_of(expert, 2, [P_DRAWER, P_LOOK], 0.0, trailing_observation=True)
    step_level, trajectory_level, stats = ipr_pairs([expert], [br], values_at(2, 1.0, 0.5), tau=0.25)
    assert step_level == [step_pair(expert, 2, E2, P_DRAWER, (1.0, 0.5))]
    assert trajectory_level == [
        remainder_pair(
            expert, br, 2, [agent(P_DRAWER), user("Observation: policy step 2 seen"), agent(P_LOOK)]
        )
    ]
    assert trajectory_level[0].chosen == [agent(E2), user(O2), agent(E3)]
    assert stats == StepPairStats(branches=1, pairs=1)


@pytest.mark.parametrize(
    ("expert_value", "agent_value"),
    [(0.75, 0.5), (0.6, 0.5), (0.5, 0.5), (0.25, 0.5)],
    ids=["gap-equals-tau", "gap-under-tau", "no-gap", "agent-better"],
)
def test_ipr_drops_the_step_pair_below_tau_but_keeps_the_trajectory_pair(expert_value, agent_value):
    expert = expert_of()
    br = branch_of(expert, 3, [P_LOOK], 0.0)
    step_level, trajectory_level, stats = ipr_pairs(
        [expert], [br], values_at(3, expert_value, agent_value), tau=0.25
    )
    assert step_level == []
    assert stats == StepPairStats(branches=1, dropped_below_tau=1)
    assert trajectory_level == [remainder_pair(expert, br, 3, [agent(P_LOOK)])]


@pytest.mark.parametrize(
    "values",
    [{}, {("t1", "value2-expert"): 1.0}, {("t1", "value2-agent"): 0.0}, values_at(3, 1.0, 0.0)],
    ids=["none", "no-agent-value", "no-expert-value", "other-step"],
)
def test_ipr_missing_values_drop_the_step_pair(values):
    expert = expert_of()
    br = branch_of(expert, 2, [P_DRAWER], 0.0)
    step_level, trajectory_level, stats = ipr_pairs([expert], [br], values, tau=0.0)
    assert step_level == [] and stats.dropped_below_tau == 1
    assert len(trajectory_level) == 1


@pytest.mark.parametrize("branch_reward", [1.0, 0.75], ids=["tie", "better"])
def test_ipr_drops_a_branch_that_did_not_end_worse(branch_reward):
    expert = expert_of(reward=0.75)
    br = branch_of(expert, 2, [P_DRAWER], branch_reward)
    step_level, trajectory_level, stats = ipr_pairs([expert], [br], values_at(2, 1.0, 0.0), tau=0.1)
    assert step_level == [] and trajectory_level == []
    assert stats == StepPairStats(branches=1, dropped_outcome_not_worse=1)


def test_ipr_counts_the_shared_drops_and_gives_no_trajectory_pair_for_them():
    expert = expert_of()
    failed = branch_of(expert, 2, [P_DRAWER], 0.0, failed="environment step 2 failed")
    same = branch_of(expert, 2, ["Action: take mug 1 from shelf 1"], 0.0, sample=1)
    lost = branch_of(expert_of("t5"), 2, [P_DRAWER], 0.0)
    values = {**values_at(2, 1.0, 0.0), **values_at(2, 1.0, 0.0, "t5")}
    step_level, trajectory_level, stats = ipr_pairs([expert], [failed, same, lost], values, tau=0.1)
    assert step_level == [] and trajectory_level == []
    assert stats == StepPairStats(branches=3, dropped_no_turn=1, dropped_same_action=1, dropped_no_expert=1)


def test_ipr_trajectory_pair_rejected_side_cut_unless_alfworld():
    expert = expert_of()
    turns = [f"Thought: try {i}.\nAction: go to drawer {i}" for i in range(12)]
    br = branch_of(expert, 2, turns, 0.0, trailing_observation=True)
    _, [cut], _ = ipr_pairs([expert], [br], {}, tau=0.0, truncate_rejected=True)
    _, [whole], _ = ipr_pairs([expert], [br], {}, tau=0.0, truncate_rejected=False)
    assert whole.rejected == br.messages[3:-1] and len(whole.rejected) == 23
    assert cut.rejected == br.messages[3 : 3 + 3 + 10]  # the expert's 3 remaining messages + 5 rounds
    assert cut.rejected[-1] == agent(turns[6])
    assert cut.chosen == whole.chosen == [agent(E2), user(O2), agent(E3)]


def test_ipr_union_at_the_experts_last_step_holds_one_pair():
    """At the expert's last step a one-turn branch's remainder pair holds the same turns as its step
    pair (only the sources differ): the union of the two levels keeps the trajectory-level one."""
    expert = expert_of()
    br = branch_of(expert, 3, [P_LOOK], 0.0)
    step_level, trajectory_level, _ = ipr_pairs([expert], [br], values_at(3, 1.0, 0.0), tau=0.5)
    assert [p.chosen_source for p in step_level] == ["expert@step3"]
    assert [p.chosen_source for p in trajectory_level] == ["expert@step3-end"]
    pairs, duplicates = union_pairs(trajectory_level, step_level)
    assert pairs == trajectory_level and duplicates == 1
