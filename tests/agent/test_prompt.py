import dataclasses

import pytest

from eto_assets.agent.prompt import (
    ACK,
    PromptBook,
    PromptBooks,
    build_conversation,
    eto_prompt_book,
    make_prompt_book,
    preamble,
    select_examples,
    training_conversation,
)
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


def test_flat_preamble_has_instruction_example_and_ack():
    book = make_prompt_book(PromptSpec("Do the task.", False), [traj("a/1", "a", 2)], layout="flat")
    pre = preamble(book, "a")
    assert pre[0].role == "user" and pre[0].content.startswith("Do the task.")
    assert "Your task is a/1\nAction: a0\nObservation: o0\nAction: a1" in pre[0].content
    assert pre[1] == Message("assistant", ACK)


def test_unknown_type_falls_back_to_an_example():
    book = make_prompt_book(PromptSpec("Do it.", False), [traj("a/1", "a", 1)], layout="flat")
    assert "Your task is a/1" in preamble(book, "zzz")[0].content
    eto = dataclasses.replace(book, layout="eto")
    assert preamble(eto, "zzz")[2].content == "Your task is a/1"


def test_flat_conversation_appends_episode_and_training_matches_inference():
    book = make_prompt_book(PromptSpec("Do it.", False), [traj("a/1", "a", 1)], layout="flat")
    episode = [Message("user", "Your task is x")]
    assert training_conversation(book, "a", episode) == build_conversation(book, "a", episode)
    conv = build_conversation(book, "a", [Message("user", "Your task is x")])
    assert [m["role"] for m in conv] == ["user", "assistant", "user"]
    assert conv[-1]["content"] == "Your task is x"


def test_eto_layout_is_the_default_and_sends_the_example_as_turns():
    example = traj("a/1", "a", 2)
    book = make_prompt_book(PromptSpec("Do it.", False), [example])
    assert book.layout == "eto"
    episode = [Message("user", "Your task is x"), Message("assistant", "Action: go")]
    conv = build_conversation(book, "a", episode)
    # instruction, OK, the example's own turns (task ... last action), then the new task
    assert conv[0] == {"role": "user", "content": "Do it."}
    assert conv[1] == {"role": "assistant", "content": ACK}
    assert conv[2 : 2 + len(example.messages)] == [
        {"role": m.role, "content": m.content} for m in example.messages
    ]
    assert conv[2 + len(example.messages) :] == [{"role": m.role, "content": m.content} for m in episode]


def test_eto_training_records_have_no_example():
    book = make_prompt_book(PromptSpec("Do it.", False), [traj("a/1", "a", 2)])
    episode = traj("b/7", "a", 1).messages
    conv = training_conversation(book, "a", episode)
    assert conv[:2] == [{"role": "user", "content": "Do it."}, {"role": "assistant", "content": ACK}]
    assert [m["content"] for m in conv[2:]] == [m.content for m in episode]
    assert not any("a/1" in m["content"] for m in conv)


def test_layout_round_trips_and_old_books_are_flat(tmp_path):
    book = make_prompt_book(PromptSpec("Do it.", False), [traj("a/1", "a", 1)], layout="flat")
    assert PromptBook.read(book.write(tmp_path / "b.json")) == book
    record = book.to_dict()
    del record["layout"]
    assert PromptBook.from_dict(record).layout == "flat"
    with pytest.raises(ValueError, match="layout"):
        PromptBook("x", {}, layout="fancy")


def test_prompts_from_an_eto_prompt_folder():
    folder = __import__("pathlib").Path(__file__).parents[1] / "fixtures" / "eto_layout" / "prompts"
    book = eto_prompt_book(folder, "lamplighter")
    inst = (folder / "instructions" / "lamplighter_inst.txt").read_text(encoding="utf-8")
    assert book.instruction == inst  # sent exactly as read
    conv = build_conversation(book, "any-type", [Message("user", "the task")])
    assert conv[0]["content"] == inst and conv[1]["content"] == ACK
    assert conv[2]["role"] == "user" and conv[-1] == {"role": "user", "content": "the task"}


def _book(instruction: str, task_type: str) -> PromptBook:
    example = [Message("user", f"a {task_type} task"), Message("assistant", "Action: look")]
    return PromptBook(instruction, {task_type: example})


def test_books_of_several_benchmarks_render_each_record_with_its_own():
    """Multi-task training: a record keeps its benchmark's instruction and example."""
    books = PromptBooks.of(
        {"alfworld": _book("Household.", "put"), "webshop": _book("Shop.", "webshop")},
        {"alfworld": ["put", "clean"], "webshop": ["webshop"]},
    )
    episode = [Message("user", "buy a lamp")]
    assert training_conversation(books, "webshop", episode)[0]["content"] == "Shop."
    assert training_conversation(books, "clean", episode)[0]["content"] == "Household."
    assert build_conversation(books, "put", episode)[2]["content"] == "a put task"  # alfworld's example
    with pytest.raises(KeyError, match="'boil' is in none of the books"):
        training_conversation(books, "boil", episode)


def test_books_refuse_a_task_type_of_two_benchmarks_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="'put' belongs to both alfworld and other"):
        PromptBooks.of(
            {"alfworld": _book("A.", "put"), "other": _book("B.", "put")},
            {"alfworld": ["put"], "other": ["put"]},
        )
    books = PromptBooks.of(
        {"alfworld": _book("A.", "put"), "webshop": _book("S.", "webshop")},
        {"alfworld": ["put"], "webshop": ["webshop"]},
    )
    path = books.write(tmp_path / "prompt_book.json")
    assert PromptBook.read(path) == books
    single = _book("A.", "put")
    assert PromptBook.read(single.write(tmp_path / "one.json")) == single
