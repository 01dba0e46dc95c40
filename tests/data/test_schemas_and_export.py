import json

import pytest

from eto_assets.agent.prompt import make_prompt_book
from eto_assets.data.eto_format import dpo_records, read_sft_conversations, sft_records, write_json
from eto_assets.data.pairs import make_pair
from eto_assets.data.schemas import DataFormatError, Message, Trajectory, read_trajectories, write_jsonl
from eto_assets.envs.base import PromptSpec


def traj(reward, source="expert"):
    return Trajectory(
        "t/1",
        "t",
        "train",
        [
            Message("user", "task"),
            Message("assistant", "Action: a"),
            Message("user", "Observation: o"),
            Message("assistant", "Action: b"),
        ],
        reward,
        reward == 1.0,
        source,
    )


def test_roundtrip(tmp_path):
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [traj(1.0), traj(0.5)])
    assert [t.reward for t in read_trajectories(path)] == [1.0, 0.5]


def test_malformed_record_names_file_and_line(tmp_path):
    path = tmp_path / "expert.jsonl"
    write_jsonl(path, [traj(1.0)])
    with path.open("a") as fh:
        fh.write('{"task_id": "x"}\n')
    with pytest.raises(DataFormatError, match=r"expert.jsonl:2: malformed trajectory record"):
        read_trajectories(path)


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(DataFormatError, match=r"bad.jsonl:1: not valid JSON"):
        read_trajectories(path)


def test_eto_sft_and_dpo_layout(tmp_path):
    book = make_prompt_book(PromptSpec("Instr.", False), [traj(1.0)])
    sft = sft_records([traj(1.0)], book)
    assert sft[0]["id"] == "t/1"
    roles = [t["from"] for t in sft[0]["conversations"]]
    assert roles[:3] == ["human", "gpt", "human"] and roles[-1] == "gpt"
    pair = make_pair(traj(1.0), traj(0.0, "agent"))
    dpo = dpo_records([pair], book)[0]
    assert set(dpo) == {"id", "prompt", "chosen", "rejected"}
    assert dpo["prompt"][-1] == {"from": "human", "value": "task"}
    assert dpo["chosen"][0]["from"] == "gpt"
    path = write_json(tmp_path / "sft.json", sft)
    assert read_sft_conversations(path)[0][-1] == Message("assistant", "Action: b")


def test_malformed_eto_file(tmp_path):
    path = tmp_path / "sft.json"
    path.write_text(json.dumps([{"id": "a", "conversations": [{"who": "human"}]}]))
    with pytest.raises(DataFormatError, match="record 0 \\(a\\) is malformed"):
        read_sft_conversations(path)
