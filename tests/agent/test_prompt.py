from eto_assets.agent.prompt import ACK, build_conversation, make_prompt_book, preamble, select_examples
from eto_assets.data.schemas import Message, Trajectory
from eto_assets.envs.base import PromptSpec


def traj(task_id, task_type, steps, success=True):
    messages = [Message("user", f"Your task is {task_id}")]
    for i in range(steps):
        messages += [Message("assistant", f"Action: a{i}"), Message("user", f"Observation: o{i}")]
    return Trajectory(task_id, task_type, "train", messages[:-1], 1.0 if success else 0.0, success, "expert")


def test_shortest_successful_example_per_type():
    experts = [
        traj("a/1", "a", 5),
        traj("a/2", "a", 3),
        traj("a/3", "a", 1, success=False),
        traj("b/1", "b", 4),
    ]
    examples = select_examples(experts)
    assert examples["a"][0].content == "Your task is a/2"
    assert examples["b"][0].content == "Your task is b/1"


def test_preamble_has_instruction_example_and_ack():
    book = make_prompt_book(PromptSpec("Do the task.", False), [traj("a/1", "a", 2)])
    pre = preamble(book, "a")
    assert pre[0].role == "user" and pre[0].content.startswith("Do the task.")
    assert "Your task is a/1\nAction: a0\nObservation: o0\nAction: a1" in pre[0].content
    assert pre[1] == Message("assistant", ACK)


def test_unknown_type_falls_back_to_an_example():
    book = make_prompt_book(PromptSpec("Do it.", False), [traj("a/1", "a", 1)])
    assert "Your task is a/1" in preamble(book, "zzz")[0].content


def test_conversation_appends_episode():
    book = make_prompt_book(PromptSpec("Do it.", False), [traj("a/1", "a", 1)])
    conv = build_conversation(book, "a", [Message("user", "Your task is x")])
    assert [m["role"] for m in conv] == ["user", "assistant", "user"]
    assert conv[-1]["content"] == "Your task is x"
