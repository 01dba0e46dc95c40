"""Prompts in ETO's folder layout -> the chat turns ETO's evaluator sends (hand-made fixtures)."""

import json
import shutil
from pathlib import Path

import pytest

from eto_assets.agent.eto_prompts import load_eto_prompt, preamble_messages, prompt_paths, task_messages
from eto_assets.data.schemas import DataFormatError, Message
from eto_assets.data.validation import validate_conversation

PROMPTS = Path(__file__).resolve().parents[1] / "fixtures" / "eto_layout" / "prompts"


def test_layout_paths():
    inst, icl = prompt_paths(PROMPTS, "lamplighter")
    assert inst == PROMPTS / "instructions" / "lamplighter_inst.txt"
    assert icl == PROMPTS / "icl_examples" / "lamplighter_icl.json"


def test_one_shot_chat_turns():
    prompt = load_eto_prompt(PROMPTS, "lamplighter")
    assert prompt.instruction == (PROMPTS / "instructions" / "lamplighter_inst.txt").read_text()  # as read
    assert len(prompt.examples) == 2 and len(prompt.examples[0]) == 6

    pre = preamble_messages(prompt)
    assert pre[0] == Message("user", prompt.instruction)
    assert pre[1] == Message("assistant", "OK")
    assert pre[2:] == list(prompt.examples[0])  # only the first example: ETO runs 1-shot
    assert pre[2] == Message("user", "Task: make sure the lamp on the pier is burning.")
    assert pre[-1] == Message("assistant", "Thought: Now I can light it.\nAction: light pier lamp")

    turns = task_messages(prompt, "Task: light the lamp at the market.")
    assert turns[:-1] == pre and turns[-1] == Message("user", "Task: light the lamp at the market.")
    assert validate_conversation(turns, last_role="user") == []  # the model answers next


def test_more_or_fewer_examples():
    prompt = load_eto_prompt(PROMPTS, "lamplighter")
    two = preamble_messages(prompt, icl_num=2)
    assert len(two) == 2 + 6 + 4 and two[8] == Message("user", "Task: check the lamp by the chapel.")
    assert preamble_messages(prompt, icl_num=0) == two[:2]
    with pytest.raises(ValueError, match="3 examples asked for, 2 available"):
        preamble_messages(prompt, icl_num=3)


def test_from_gpt_role_key_is_accepted():
    # ETO's own files mix {"role": ...} and {"from": "gpt"} turns; roles follow position
    prompt = load_eto_prompt(PROMPTS, "mailroom")
    assert [m.role for m in prompt.examples[0]] == ["user", "assistant", "user", "assistant"]


@pytest.fixture
def folder(tmp_path):
    shutil.copytree(PROMPTS, tmp_path / "prompts")
    return tmp_path / "prompts"


def _write_icl(folder: Path, examples) -> None:
    (folder / "icl_examples" / "lamplighter_icl.json").write_text(json.dumps(examples))


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ({"role": "user"}, "non-empty JSON list of examples"),
        (
            [[{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]],
            "example 0, turn 0, field 'role': 'assistant' where the position needs the user",
        ),
        (
            [[{"role": "user", "content": "x"}, {"role": "assistant", "content": " "}]],
            "example 0, turn 1, field 'content': missing or empty",
        ),
        ([[{"role": "user", "content": "x"}]], "example 0: must end on an assistant turn"),
        ([[{"content": "x"}, {"role": "assistant", "content": "y"}]], "example 0, turn 0: no 'role'"),
    ],
)
def test_malformed_examples(folder, examples, message):
    _write_icl(folder, examples)
    with pytest.raises(DataFormatError, match="lamplighter_icl.json") as info:
        load_eto_prompt(folder, "lamplighter")
    assert message in str(info.value)


def test_missing_files(folder):
    with pytest.raises(FileNotFoundError, match="nosuch_inst.txt"):
        load_eto_prompt(folder, "nosuch")
    (folder / "icl_examples" / "lamplighter_icl.json").unlink()
    with pytest.raises(FileNotFoundError, match="lamplighter_icl.json"):
        load_eto_prompt(folder, "lamplighter")


def test_bad_json_and_empty_task(folder):
    (folder / "icl_examples" / "lamplighter_icl.json").write_text("[[{")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        load_eto_prompt(folder, "lamplighter")
    with pytest.raises(ValueError, match="task text is empty"):
        task_messages(load_eto_prompt(PROMPTS, "mailroom"), "  ")
