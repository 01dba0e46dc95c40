"""Parsing the agent's answer, and ETO's stop strings."""

import pytest

from eto_assets.data.react import STOP_STRINGS, parse_answer, truncate_at_stop


def test_action_only():
    assert parse_answer("Action: open door to kitchen").action == "open door to kitchen"
    assert parse_answer("Action: open door to kitchen").thought is None


def test_thought_and_action():
    parsed = parse_answer("Thought: the animal is outside.\nAction: go to outside")
    assert parsed.thought == "the animal is outside."
    assert parsed.action == "go to outside"


def test_multiline_thought_keeps_first_action():
    parsed = parse_answer("Thought: first\nsecond line\nAction: look around\nAction: wait")
    assert parsed.thought == "first\nsecond line"
    assert parsed.action == "look around"


def test_no_action_is_invalid():
    assert parse_answer("I think I should look around").action == ""
    assert parse_answer("").action == ""
    assert parse_answer("Action:   ").action == ""


def test_hallucinated_observation_is_cut():
    text = "Action: open door\nObservation: The door is open.\nAction: go to kitchen"
    assert truncate_at_stop(text) == "Action: open door"
    assert parse_answer(text).action == "open door"


def test_case_and_backticks():
    assert parse_answer("action: `focus on frog`").action == "focus on frog"


def test_stop_strings_are_etos():
    """ETO's agent stops at exactly these (ETO eval_agent/agents/base.py:14)."""
    assert STOP_STRINGS == ("\nObservation:", "\nTask:", "\n---")


@pytest.mark.parametrize("stop", ["\nObservation:", "\nTask:", "\n---"])
def test_each_hallucinated_turn_is_cut(stop):
    """A model that goes on to write the environment's reply, a next task or the prompt's ``---``
    rule is cut right before it, so only its own action is played."""
    text = f"Thought: the door is shut.\nAction: open door{stop} more\nAction: go to kitchen"
    assert truncate_at_stop(text) == "Thought: the door is shut.\nAction: open door"
    assert parse_answer(text).action == "open door"


def test_observation_without_its_newline_is_not_a_stop_as_in_eto():
    """ETO stops only at ``\\nObservation:``: a bare "Observation:" inside the action line reaches
    its parser (``Action: (.*)``, eval_agent/envs/sciworld_env.py:33) and the engine as part of the
    action, which then fails. Stopping there too would end generations earlier than ETO does and
    turn them into valid actions that ETO would have scored as invalid."""
    text = "Action: look around Observation: a kitchen"
    assert truncate_at_stop(text) == text
    assert parse_answer(text).action == "look around Observation: a kitchen"
    assert truncate_at_stop("Action: wait\nObservations follow") == "Action: wait\nObservations follow"
