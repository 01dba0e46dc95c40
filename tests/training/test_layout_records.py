"""SFT and DPO records follow the prompt book's layout: ETO's has the instruction, "OK", then the
episode (no in-context example); the flat layout repeats the rendered example in every record."""

import dataclasses

from eto_assets.agent.prompt import ACK, PromptBook
from eto_assets.data.schemas import Message, PreferencePair, Trajectory
from eto_assets.training.dpo import dpo_dataset
from eto_assets.training.sft import sft_dataset

EXAMPLE = [Message("user", "example task"), Message("assistant", "Action: look around")]
BOOK = PromptBook("Do the task.", {"t": EXAMPLE}, layout="eto")
EPISODE = [Message("user", "the task"), Message("assistant", "Action: go"), Message("user", "ok"),
           Message("assistant", "Action: stop")]  # fmt: skip


def test_eto_sft_record_is_instruction_ok_episode():
    traj = Trajectory("x/1", "t", "train", EPISODE, 1.0, True, "expert")
    row = sft_dataset([traj], BOOK)[0]["messages"]
    assert [m["content"] for m in row] == ["Do the task.", ACK, *(m.content for m in EPISODE)]
    flat = sft_dataset([traj], dataclasses.replace(BOOK, layout="flat"))[0]["messages"]
    assert "example task" in flat[0]["content"] and len(flat) == 2 + len(EPISODE)


def test_eto_dpo_prompt_has_no_example():
    pair = PreferencePair("x/1", "t", EPISODE[:1], EPISODE[1:], EPISODE[1:2], 1.0, 0.0, "expert", "agent")
    row = dpo_dataset([pair], BOOK)[0]
    assert [m["content"] for m in row["prompt"]] == ["Do the task.", ACK, "the task"]
