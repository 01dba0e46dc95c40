"""The pairs stage reads explored episodes in the golden records' form, as ETO's
construct_preference.py does (lines 74 and 141): the agent saw ScienceWorld's ``Task Description:``
turn, the expert's turn has none, and a pair whose agent side wins takes the golden prompt."""

from eto_assets.data.pairs import build_preference_pairs
from eto_assets.data.schemas import Message, Trajectory
from eto_assets.envs.sciworld import TASK_TURN_PREFIX, golden_form

TASK = "Your task is to find a(n) animal. First, focus on the thing."


def episode(first: str, reward: float, source: str) -> Trajectory:
    messages = [Message("user", first), Message("assistant", "Thought: look.\nAction: look around")]
    return Trajectory("find-animal/0", "find-animal", "train", messages, reward, reward == 1.0, source)


def test_explored_task_turn_loses_the_prefix_and_pairs_match_the_expert():
    expert = episode(TASK, 0.3, "expert")
    explored = episode(TASK_TURN_PREFIX + TASK, 0.9, "agent")
    golden = golden_form(explored)
    assert golden.messages[0] == Message("user", TASK) and golden.messages[1:] == explored.messages[1:]
    assert explored.messages[0].content.startswith(TASK_TURN_PREFIX)  # the stored episode is untouched
    pairs, stats = build_preference_pairs([expert], [golden])
    assert stats.pairs == 1 and stats.task_text_differs == 0
    assert pairs[0].chosen_source == "agent" and pairs[0].prompt == [Message("user", TASK)]


def test_other_task_turns_are_left_alone():
    plain = episode("WebShop [SEP] Instruction: [SEP] i need a red shirt", 0.5, "agent")
    assert golden_form(plain) is plain
