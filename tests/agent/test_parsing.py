from eto_assets.agent.parsing import parse_answer, truncate_at_stop


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
