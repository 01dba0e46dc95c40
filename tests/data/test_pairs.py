import pytest

from eto_assets.data.pairs import REJECTED_EXTRA_MESSAGES, build_preference_pairs, make_pair
from eto_assets.data.schemas import Message, Trajectory


def episode(task_id, steps, reward, source, tag="x"):
    messages = [Message("user", f"task {task_id}")]
    for i in range(steps):
        messages += [Message("assistant", f"Action: {tag}{i}"), Message("user", f"Observation: {tag}{i}")]
    messages.pop()
    return Trajectory(task_id, "t", "train", messages, reward, reward == 1.0, source)


def test_expert_chosen_when_higher():
    pair = make_pair(episode("1", 3, 1.0, "expert", "e"), episode("1", 3, 0.2, "agent", "a"))
    assert pair.chosen_source == "expert" and pair.rejected_source == "agent"
    assert pair.chosen_reward == 1.0 and pair.rejected_reward == 0.2
    assert pair.prompt == [Message("user", "task 1")]
    assert pair.chosen[0].content == "Action: e0"


def test_agent_chosen_when_higher():
    pair = make_pair(episode("1", 3, 0.5, "expert", "e"), episode("1", 2, 0.9, "agent", "a"))
    assert pair.chosen_source == "agent" and pair.rejected_source == "expert"


def test_ties_dropped_and_counted():
    pairs, stats = build_preference_pairs(
        [episode("1", 2, 1.0, "expert"), episode("2", 2, 1.0, "expert")],
        [episode("1", 2, 1.0, "agent"), episode("2", 2, 0.0, "agent")],
    )
    assert len(pairs) == 1 and pairs[0].task_id == "2"
    assert stats.dropped_ties == 1 and stats.pairs == 1


def test_rejected_cut_to_chosen_length_plus_ten():
    chosen = episode("1", 2, 1.0, "expert")  # 3 turns after the prompt
    rejected = episode("1", 20, 0.0, "agent")
    pair = make_pair(chosen, rejected)
    assert len(pair.chosen) == 3
    assert len(pair.rejected) <= len(pair.chosen) + REJECTED_EXTRA_MESSAGES
    assert len(pair.rejected) == len(pair.chosen) + REJECTED_EXTRA_MESSAGES  # 13 is odd: ends on agent


@pytest.mark.parametrize(
    ("expert_reward", "agent_reward", "truncate", "agent_steps"),
    [(1.0, 0.1, True, 2), (0.5, 1.0, True, 2), (1.0, 0.0, False, 20)],
    ids=["agent-rejected", "agent-chosen", "alfworld-untruncated"],
)
def test_both_end_on_agent_turn(expert_reward, agent_reward, truncate, agent_steps):
    """The agent's trailing observation is dropped, and only it: the agent's side is its whole
    episode but the last message, short enough (or untruncated) that the cut to expert + 10
    messages cannot be what removed it."""
    expert = episode("1", 3, expert_reward, "expert", "e")
    agent = episode("1", agent_steps, agent_reward, "agent", "a")
    agent.messages.append(Message("user", "Observation: trailing"))
    assert len(agent.messages) - 1 < len(expert.messages) - 1 + REJECTED_EXTRA_MESSAGES or not truncate
    pair = make_pair(expert, agent, truncate_rejected=truncate)
    assert pair is not None, "the trailing observation was kept, so the agent's side did not end on its turn"
    agent_side = pair.chosen if pair.chosen_source == "agent" else pair.rejected
    assert agent_side == agent.messages[1:-1], "the agent's side is not its episode minus the observation"
    assert pair.chosen[-1].role == pair.rejected[-1].role == "assistant"


def test_missing_expert_is_counted():
    pairs, stats = build_preference_pairs([], [episode("9", 2, 0.0, "agent")])
    assert pairs == [] and stats.dropped_no_expert == 1


def test_mismatched_tasks_rejected():
    with pytest.raises(ValueError, match="different tasks"):
        make_pair(episode("1", 2, 1.0, "expert"), episode("2", 2, 0.0, "agent"))


def test_agent_without_actions_gives_no_pair():
    empty = Trajectory("1", "t", "train", [Message("user", "task 1")], 0.0, False, "agent")
    pairs, stats = build_preference_pairs([episode("1", 2, 1.0, "expert")], [empty])
    assert pairs == [] and stats.dropped_empty == 1


def test_alfworld_rejected_never_truncated():
    from eto_assets.data.pairs import truncates_rejected

    assert not truncates_rejected("alfworld")
    assert truncates_rejected("sciworld") and truncates_rejected("webshop")
    expert, agent = episode("1", 2, 1.0, "expert"), episode("1", 20, 0.0, "agent")
    pair = make_pair(expert, agent, truncate_rejected=truncates_rejected("alfworld"))
    assert pair.rejected == agent.messages[1:]  # all 20 rounds kept
    assert pair.rejected[-1].role == "assistant"


def test_losing_expert_is_not_truncated():
    # ETO cuts only the agent's trajectory (when the expert wins); an expert that loses stays whole.
    expert, agent = episode("1", 20, 0.5, "expert"), episode("1", 1, 1.0, "agent")
    pair = make_pair(expert, agent)
    assert pair.chosen_source == "agent" and pair.rejected == expert.messages[1:]


def test_webshop_expert_below_one_gives_agent_chosen_pairs():
    # WebShop's expert reward is the record's own (ETO's file has rewards < 1).
    experts = [episode("1", 3, 0.75, "expert", "e"), episode("2", 3, 0.5, "expert", "e")]
    explored = [episode("1", 2, 1.0, "agent", "a"), episode("2", 2, 0.25, "agent", "a")]
    pairs, stats = build_preference_pairs(experts, explored, truncate_rejected=True)
    assert stats.agent_chosen == 1 and stats.pairs == 2
    won = next(p for p in pairs if p.task_id == "1")
    assert won.chosen_source == "agent" and won.chosen_reward == 1.0 and won.rejected_reward == 0.75
    assert won.chosen[-1].role == won.rejected[-1].role == "assistant"


def test_side_not_ending_on_agent_turn_drops_the_pair():
    expert = episode("1", 2, 1.0, "expert")
    expert.messages.append(Message("user", "Observation: dangling"))  # a malformed expert side
    pairs, stats = build_preference_pairs([expert], [episode("1", 3, 0.0, "agent")])
    assert pairs == [] and stats.dropped_empty == 1


def test_expert_with_different_task_text_still_pairs():
    # ETO's construct_preference.py takes the chosen side's task turn as the prompt and never
    # compares the two task turns; an imported expert's text may differ from the engine's.
    expert = episode("1", 3, 1.0, "expert", "e")
    expert.messages[0] = Message("user", "Your task is to find an animal. (as worded in ETO's file)")
    agent = episode("1", 3, 0.0, "agent", "a")
    pairs, stats = build_preference_pairs([expert], [agent])
    assert stats.pairs == 1 and stats.task_text_differs == 1
    assert pairs[0].prompt == expert.messages[:1] and pairs[0].chosen_source == "expert"
    loser = episode("1", 3, 0.0, "expert", "e")
    loser.messages[0] = Message("user", "another wording")
    won = make_pair(loser, episode("1", 2, 1.0, "agent", "a"))
    assert won.prompt == [Message("user", "task 1")]  # the agent won: its own task turn, as in ETO
