import pytest

from eto_assets.data.schemas import DataFormatError, Message, Trajectory, read_trajectories, write_jsonl


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
