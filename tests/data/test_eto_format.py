"""ETO's SFT / DPO files: strict reading, lossless round trips, matching records to tasks."""

import json
from pathlib import Path

import pytest

from eto_assets.data.eto_format import (
    EtoFormatError,
    alfworld_game_key,
    dpo_records,
    eto_record_key,
    match_records,
    read_eto_dpo,
    read_eto_sft,
    read_sft_conversations,
    record_to_pair,
    record_to_trajectory,
    sft_records,
    write_json,
)
from eto_assets.data.pairs import make_pair
from eto_assets.data.schemas import DataFormatError, Message, Trajectory
from eto_assets.data.validation import validate_conversation

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eto_layout" / "data"
INSTRUCTION = "Sort the lamps. One action per turn."


def traj(task_id: str, reward: float, source: str = "expert", **metadata) -> Trajectory:
    messages = [
        Message("user", f"task {task_id}"),
        Message("assistant", "Action: a"),
        Message("user", "Observation: o"),
        Message("assistant", f"Action: b{reward}"),
    ]
    return Trajectory(task_id, "lamp", "train", messages, reward, reward == 1.0, source, dict(metadata))


def h(text: str) -> dict:
    return {"from": "human", "value": text}


def g(text: str) -> dict:
    return {"from": "gpt", "value": text}


def good(rid="ok") -> dict:
    return {"id": rid, "conversations": [h("inst"), g("OK"), h("task"), g("Action: x")]}


def write(tmp_path: Path, data, name="sft.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# --------------------------------------------------------------------------- validate_conversation


def test_validate_conversation_rules():
    u, a = Message("user", "x"), Message("assistant", "y")
    assert validate_conversation([u, a, u, a]) == []
    assert validate_conversation([]) == ["empty conversation"]
    assert validate_conversation([a, u, a]) == ["turn 0: must be from the user, got assistant"]
    assert validate_conversation([u, u, a]) == ["turn 1: two user turns in a row (turns must alternate)"]
    assert validate_conversation([u, a, u]) == ["turn 2: last turn must be from the assistant, got user"]
    assert validate_conversation([u, Message("assistant", "  ")]) == ["turn 1: empty text"]
    assert validate_conversation([u, Message("system", "s")]) == ["turn 1: unknown role 'system'"]
    # fragments: a DPO prompt ends on the user, a continuation starts on the assistant
    assert validate_conversation([u, a, u], last_role="user") == []
    assert validate_conversation([a], first_role="assistant") == []


# --------------------------------------------------------------------------- strict SFT reader


def test_reads_eto_shaped_files():
    sci, report = read_eto_sft(FIXTURES / "sciworld_sft.json")
    assert [r.id for r in sci] == ["11_0", "20_3"]
    assert report.kept == 2 and report.skipped == 0 and report.problems == []
    first = sci[0]
    assert first.instruction.startswith("You are a lab assistant") and first.ack == "OK"
    assert first.messages[0] == Message("user", "Your task is to find an animal. Focus on it when found.")
    assert first.messages[-1].role == "assistant" and len(first.messages) == 4
    assert first.reward is None and first.game_file is None

    web, report = read_eto_sft(FIXTURES / "webshop_sft.json")
    assert [r.id for r in web] == [4116, 4116, 77]  # ETO's WebShop ids are JSON integers
    assert [r.reward for r in web] == [1.0, 0.5, 0.25]
    assert web[0].extra == {"source": "human"}
    assert report.duplicate_ids == {"4116": 2}  # reported, not rejected (ETO's own file has this)

    alf, _ = read_eto_sft(FIXTURES / "alfworld_sft.json")
    assert alf[1].game_file.endswith("Book-None-DeskLamp-301/trial_T20190909_111111_000002")
    assert read_sft_conversations(FIXTURES / "alfworld_sft.json")[0] == list(alf[0].messages)


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        ({"conversations": [h("i"), g("OK"), h("t"), g("a")]}, "id", "missing"),
        ({"id": "r"}, "conversations", "missing"),
        ({"id": "r", "conversations": []}, "conversations", "empty conversation"),
        ({"id": "r", "conversations": "hi"}, "conversations", "must be a list of turns"),
        (
            {"id": "r", "conversations": [h("i"), g("OK"), h("t"), {"from": "system", "value": "a"}]},
            "conversations[3].from",
            "unknown role 'system'",
        ),
        (
            {"id": "r", "conversations": [h("i"), g("OK"), h("t"), {"from": "gpt"}]},
            "conversations[3].value",
            "missing",
        ),
        (
            {"id": "r", "conversations": [h("i"), g("OK"), h("t"), g("  ")]},
            "conversations[3].value",
            "empty turn text",
        ),
        (
            {"id": "r", "conversations": [g("OK"), h("i"), g("a"), h("t"), g("a")]},
            "conversations[0].from",
            "must be from the user",
        ),
        (
            {"id": "r", "conversations": [h("i"), g("OK"), h("t"), h("t2"), g("a")]},
            "conversations[3].from",
            "two user turns in a row",
        ),
        (
            {"id": "r", "conversations": [h("i"), g("OK"), h("t"), g("a"), h("obs")]},
            "conversations[4].from",
            "last turn must be from the assistant",
        ),
        ({"id": "r", "conversations": [h("i"), g("OK")]}, "conversations", "needs at least 4"),
        ({**good("r"), "reward": "high"}, "reward", "must be a finite number"),
        ({**good("r"), "game_file": ""}, "game_file", "non-empty string"),
        ({"id": True, "conversations": [h("i"), g("OK"), h("t"), g("a")]}, "id", "string or an integer"),
    ],
)
def test_each_malformation_names_file_record_and_field(tmp_path, record, field, reason):
    path = write(tmp_path, [good("fine"), record], "bad_sft.json")
    with pytest.raises(DataFormatError) as info:
        read_eto_sft(path)
    message = str(info.value)
    assert "bad_sft.json" in message and f"field '{field}'" in message and reason in message
    assert ("record 'r' (index 1)" in message) or ("record at index 1" in message)


def test_fail_lists_every_bad_record_in_one_error(tmp_path):
    records = [good("a"), {"id": "b"}, good("c"), {"id": "d", "conversations": []}, 7]
    path = write(tmp_path, records)
    with pytest.raises(EtoFormatError) as info:
        read_eto_sft(path)
    err = info.value
    assert str(err).startswith(f"{path}: 3 of 5 records are bad (3 malformed):")
    assert [(p.index, p.record_id, p.field) for p in err.problems] == [
        (1, "b", "conversations"),
        (3, "d", "conversations"),
        (4, None, "<record>"),
    ]


def test_skip_keeps_valid_records_and_reports(tmp_path):
    records = [good("a"), {"id": "b"}, good("c"), {"id": "d", "conversations": [h("i"), g("OK"), g("x")]}]
    kept, report = read_eto_sft(write(tmp_path, records), on_bad_record="skip")
    assert [r.id for r in kept] == ["a", "c"] and [r.index for r in kept] == [0, 2]
    assert (report.total, report.kept, report.skipped) == (4, 2, 2)
    assert report.reasons() == {"conversations": 1, "conversations[2].from": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ('{"id": "a"}', "one JSON list of records")],
)
def test_file_level_faults_always_raise(tmp_path, text, message):
    with pytest.raises(DataFormatError, match=message):
        read_eto_sft(write(tmp_path, text), on_bad_record="skip")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_eto_sft(tmp_path / "nope.json")


# --------------------------------------------------------------------------- export and round trips


def test_sft_export_layout_and_lossless_round_trip(tmp_path):
    trajs = [traj("lamp/0", 1.0), traj("lamp/1", 0.5, game_file="json_2.1.1/train/t-1/trial_1")]
    records = sft_records(trajs, INSTRUCTION)
    assert records[0]["conversations"][:2] == [h(INSTRUCTION), g("OK")]
    assert records[0]["conversations"][2] == h("task lamp/0")  # no in-context example
    assert "game_file" not in records[0] and records[1]["game_file"] == "json_2.1.1/train/t-1/trial_1"

    back, _ = read_eto_sft(write_json(tmp_path / "out" / "sft.json", records))
    for original, record in zip(trajs, back, strict=True):
        assert record.id == original.task_id and record.instruction == INSTRUCTION
        assert list(record.messages) == original.messages and record.reward == original.reward
        assert record.game_file == original.metadata.get("game_file")
        again = record_to_trajectory(record, task_id=original.task_id, task_type="lamp", split="train")
        assert again.messages == original.messages
        assert (again.reward, again.success) == (original.reward, original.success)
        assert again.metadata.get("game_file") == original.metadata.get("game_file")


def test_sft_export_refuses_malformed_trajectories_and_prompt_objects():
    bad = traj("lamp/0", 1.0)
    bad.messages.append(Message("user", "Observation: trailing"))
    with pytest.raises(DataFormatError, match="'lamp/0'.*last turn must be from the assistant"):
        sft_records([bad], INSTRUCTION)
    with pytest.raises(TypeError, match="instruction text"):
        sft_records([traj("lamp/0", 1.0)], object())  # e.g. a PromptBook instead of its text


def test_dpo_export_layout_and_lossless_round_trip(tmp_path):
    pair = make_pair(traj("lamp/3", 1.0), traj("lamp/3", 0.0, "agent"))
    (record,) = dpo_records([pair], INSTRUCTION)
    assert set(record) == {"id", "prompt", "chosen", "rejected"}  # ETO's layout, nothing more
    assert record["prompt"] == [h(INSTRUCTION), g("OK"), h("task lamp/3")]
    assert record["chosen"][0]["from"] == "gpt" and record["chosen"][-1]["from"] == "gpt"
    assert record["rejected"][-1] == g("Action: b0.0")

    path = write_json(tmp_path / "dpo.json", dpo_records([pair], INSTRUCTION, with_rewards=True))
    (back,), report = read_eto_dpo(path)
    assert report.kept == 1 and back.id == "lamp/3" and back.instruction == INSTRUCTION
    again = record_to_pair(
        back, task_id="lamp/3", task_type="lamp", chosen_source="expert", rejected_source="agent"
    )
    assert again == pair


def test_reads_eto_shaped_dpo_and_rejects_bad_continuations(tmp_path):
    (rec,), _ = read_eto_dpo(FIXTURES / "sciworld_dpo.json")
    assert rec.prompt == (Message("user", "Your task is to find an animal. Focus on it when found."),)
    assert len(rec.chosen) == 3 and len(rec.rejected) == 1 and rec.chosen_reward is None
    pair = record_to_pair(rec, task_id="find-animal/0", task_type="find-animal")
    assert (pair.chosen_reward, pair.rejected_reward) == (1.0, 0.0)

    bad = json.loads((FIXTURES / "sciworld_dpo.json").read_text())[0]
    bad["rejected"].append(h("Observation: dangling"))
    del bad["chosen"]
    with pytest.raises(EtoFormatError) as info:
        read_eto_dpo(write(tmp_path, [bad], "dpo.json"))
    assert {p.field for p in info.value.problems} == {"chosen", "rejected[1].from"}


# --------------------------------------------------------------------------- matching records to tasks


def test_alfworld_game_key():
    key = "train/pick_and_place_simple-Pen-None-Desk-310/trial_T1"
    assert alfworld_game_key("data/json_2.1.1/" + key) == key
    assert alfworld_game_key("/abs/alfworld/json_2.1.1/" + key + "/game.tw-pddl") == key
    with pytest.raises(ValueError):
        alfworld_game_key("trial_T1")


def test_match_records_per_benchmark(tmp_path):
    sci, _ = read_eto_sft(FIXTURES / "sciworld_sft.json")
    matched, report = match_records(
        sci,
        {"11_0": "find-animal/0", "20_3": "lifespan-longest-lived/3"},
        benchmark="sciworld",
        path=FIXTURES / "sciworld_sft.json",
    )
    assert [t for _, t in matched] == ["find-animal/0", "lifespan-longest-lived/3"] and report.skipped == 0

    web, _ = read_eto_sft(FIXTURES / "webshop_sft.json")
    matched, report = match_records(web, lambda key: f"train/{key}", benchmark="webshop", path=Path("w.json"))
    assert [t for _, t in matched] == ["train/4116", "train/4116", "train/77"]
    assert report.duplicate_ids == {"train/4116": 2}

    alf, _ = read_eto_sft(FIXTURES / "alfworld_sft.json")
    assert eto_record_key(alf[0], "alfworld") == (
        "game_file",
        "train/pick_and_place_simple-Pen-None-Desk-310/trial_T20190908_000000_000001",
    )
    matched, _ = match_records(
        alf, lambda key: key.replace("valid_seen/", "seen/"), benchmark="alfworld", path=Path("a.json")
    )
    assert len(matched) == 2


def test_unknown_task_id_names_file_record_and_field():
    sci, _ = read_eto_sft(FIXTURES / "sciworld_sft.json")
    with pytest.raises(EtoFormatError) as info:
        match_records(sci, {"11_0": "find-animal/0"}, benchmark="sciworld", path=FIXTURES / "sci.json")
    message = str(info.value)
    assert "sci.json" in message and "record '20_3' (index 1), field 'id'" in message
    assert "unknown task id '20_3'" in message

    matched, report = match_records(
        sci, {"11_0": "find-animal/0"}, benchmark="sciworld", path=Path("s.json"), on_bad_record="skip"
    )
    assert len(matched) == 1 and report.skipped == 1 and report.problems[0].field == "id"

    alf, _ = read_eto_sft(FIXTURES / "alfworld_sft.json")
    with pytest.raises(EtoFormatError, match=r"record 1 \(index 1\), field 'game_file': unknown task id"):
        match_records(alf, {}, benchmark="alfworld", path=Path("a.json"))


def test_read_and_match_lists_every_bad_record_whatever_the_reason(tmp_path):
    """A record naming an unknown task is judged even when other records are malformed."""
    from eto_assets.data.eto_format import Resolution, read_and_match_sft

    def resolve(key: str) -> Resolution:
        known = {
            "a": Resolution("train", "t/a", "t"),
            "out": Resolution("outside", "t/out", "t"),
            "dev": Resolution("held_out", reason="in the dev split"),
        }
        return known.get(key, Resolution("unknown", reason=f"unknown task id {key!r}"))

    records = [good("a"), {"id": "b"}, good("nope"), good("dev"), good("out"), 7]
    path = write(tmp_path, records, "mixed.json")
    with pytest.raises(EtoFormatError) as info:
        read_and_match_sft(path, resolve, benchmark="sciworld")
    err = info.value
    assert str(err).startswith(f"{path}: 4 of 6 records are bad (2 malformed, 1 unknown, 1 held out):")
    assert [(p.index, p.record_id, p.kind) for p in err.problems] == [
        (1, "b", "malformed"),
        (2, "nope", "unknown"),
        (3, "dev", "held_out"),
        (5, None, "malformed"),
    ]
    matched, report = read_and_match_sft(path, resolve, benchmark="sciworld", on_bad_record="skip")
    assert [t for _, t in matched] == ["t/a", "t/out"] and [o.record_id for o in report.outside] == ["out"]
    assert (report.total, report.kept, report.skipped, report.refused, report.bad) == (6, 2, 4, 1, 3)
