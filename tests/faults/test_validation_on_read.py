"""Every stage validates what it reads, not only what the expert stage wrote: an expert file edited
by hand so that a record starts with the agent's turn is refused by SFT's own reader before any
training, naming the file and line; so are misordered rollout records and preference pairs. Real
ScienceWorld expert episodes, the real tiny model and the real SFT launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eto_assets.config.profile import TrainConfig
from eto_assets.data.schemas import (
    DataFormatError,
    PreferencePair,
    read_pairs,
    read_trajectories,
    write_jsonl,
)
from eto_assets.training.launch import TrainSpec, run_spec


def _swap_first_two_turns(path: Path, line: int) -> None:
    """Edit record ``line`` (1-based) the way a user's script might: its first two turns swapped."""
    lines = path.read_text().splitlines()
    record = json.loads(lines[line - 1])
    record["messages"][0], record["messages"][1] = record["messages"][1], record["messages"][0]
    lines[line - 1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


def test_sft_refuses_an_expert_file_with_swapped_roles_naming_file_and_line(
    tmp_path, expert_sample, tiny_model_dir
):
    model_dir, book = tiny_model_dir
    experts = tmp_path / "expert_trajectories.jsonl"
    write_jsonl(experts, expert_sample)
    _swap_first_two_turns(experts, 2)
    book_path = book.write(tmp_path / "prompt_book.json")
    out = tmp_path / "checkpoint"
    spec = TrainSpec(
        "sft",
        str(model_dir),
        str(experts),
        str(book_path),
        str(out),
        TrainConfig(learning_rate=1e-3, num_train_epochs=1, batch_size=2),
    )
    with pytest.raises(DataFormatError) as caught:
        run_spec(spec)
    message = str(caught.value)
    assert message.startswith(f"{experts}:2: trajectory of task {expert_sample[1].task_id}: ")
    assert "turn 0: must be from the user, got assistant" in message
    assert not out.exists()  # refused before any training


def test_a_rollout_record_ending_on_an_observation_is_refused(tmp_path, expert_sample):
    path = tmp_path / "exploration_rollouts.jsonl"
    write_jsonl(path, expert_sample)
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["messages"].append({"role": "user", "content": "Observation: a trailing turn"})
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataFormatError, match=rf"^{path}:1: .*last turn must be from the assistant, got user"
    ):
        read_trajectories(path)


def test_an_episode_that_never_acted_is_read(tmp_path, expert_sample):
    """A failed episode holds the task message alone: a real record, not a malformed one."""
    only_task = expert_sample[0]
    only_task = type(only_task)(**{**only_task.__dict__, "messages": only_task.messages[:1]})
    path = tmp_path / "rollouts.jsonl"
    write_jsonl(path, [only_task, *expert_sample])
    assert len(read_trajectories(path)) == len(expert_sample) + 1


def test_a_pair_whose_chosen_side_starts_with_the_user_is_refused(tmp_path, expert_sample):
    expert = expert_sample[0]
    good = PreferencePair(
        expert.task_id,
        expert.task_type,
        expert.messages[:1],
        expert.messages[1:],
        expert.messages[1:2],
        1.0,
        0.0,
        "expert",
        "agent",
    )
    bad = PreferencePair(**{**good.__dict__, "chosen": expert.messages[2:]})
    path = tmp_path / "preference_pairs.jsonl"
    write_jsonl(path, [good, bad])
    with pytest.raises(
        DataFormatError, match=rf"^{path}:2: pair of task .*chosen turn 0: must be from the assistant"
    ):
        read_pairs(path)
