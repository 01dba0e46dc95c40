"""Expert source = a file in ETO's SFT layout: import, validation, export round trip, and SFT end to
end on the micro profile (stages called directly, no Dagster)."""

import json
import shutil
from pathlib import Path

import pytest

from eto_assets.config.profile import ExpertConfig, PromptConfig, load_profile
from eto_assets.data.eto_format import EtoFormatError
from eto_assets.data.schemas import read_trajectories
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.registry import BenchmarkSources
from eto_assets.stages import build_base_model, generate_expert_data, open_task_run, train_sft_policy
from eto_assets.stages.expert import COMPARABLE_TAG

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eto_layout"
MICRO_SFT = FIXTURES / "data" / "sciworld_micro_sft.json"


def micro_run(home: Path, data_dir: Path, **updates):
    profile = load_profile("micro").model_copy(update=updates)
    return open_task_run("sciworld", profile, BenchmarkSources(home=home, data_dir=data_dir))


def test_eto_sft_file_imports_and_trains_on_micro(tmp_path, data_dir):
    run = micro_run(tmp_path, data_dir, expert=ExpertConfig(source=str(MICRO_SFT)))
    with EnvironmentPool() as envs:
        result = generate_expert_data(run, envs)
    experts = read_trajectories(run.layout.expert_jsonl)
    # ETO ids resolve through taskname2id.json to our task ids; order and text kept
    assert [t.task_id for t in experts] == ["find-animal/0", "find-animal/54", "lifespan-longest-lived/2"]
    records = json.loads(MICRO_SFT.read_text())
    assert [m.content for m in experts[0].messages] == [t["value"] for t in records[0]["conversations"][2:]]
    assert all(t.source == "expert" and t.reward == 1.0 and t.metadata["eto_id"] for t in experts)
    assert result.metrics["expert_count"] == 3 and result.metrics["expert_bad_records"] == 0
    assert result.tags[COMPARABLE_TAG].startswith("false: ")  # micro runs a subset
    assert "generated" not in result.tags[COMPARABLE_TAG]
    # the book takes the records' instruction (as ETO trains with it) and ETO's layout
    book = json.loads(run.layout.prompt_book.read_text())
    assert book["instruction"] == records[0]["conversations"][0]["value"] and book["layout"] == "eto"
    build_base_model(run, "tiny")
    sft = train_sft_policy(run, "tiny")
    assert sft.metadata["examples"] == 3
    assert (Path(sft.policy.checkpoint) / "config.json").is_file()


def test_export_then_import_is_lossless(tmp_path, data_dir):
    first = micro_run(tmp_path / "a", data_dir, expert=ExpertConfig(source=str(MICRO_SFT)))
    with EnvironmentPool() as envs:
        generate_expert_data(first, envs)
    exported = first.layout.expert_jsonl.with_suffix(".eto.json")
    again = micro_run(tmp_path / "b", data_dir, expert=ExpertConfig(source=str(exported)))
    with EnvironmentPool() as envs:
        generate_expert_data(again, envs)

    def key(t):
        return (t.task_id, t.task_type, t.split, t.messages, t.reward, t.success, t.source)

    a = read_trajectories(first.layout.expert_jsonl)
    b = read_trajectories(again.layout.expert_jsonl)
    assert [key(t) for t in a] == [key(t) for t in b]
    assert json.loads(exported.read_text()) == json.loads(
        again.layout.expert_jsonl.with_suffix(".eto.json").read_text()
    )


def bad_copy(tmp_path: Path) -> Path:
    records = json.loads(MICRO_SFT.read_text())
    unknown = json.loads(json.dumps(records[1]))
    unknown["id"] = "11_99999"  # no task has it
    swapped = json.loads(json.dumps(records[2]))
    swapped["id"] = "20_61"
    swapped["conversations"][3]["from"] = "human"  # two human turns in a row
    path = tmp_path / "bad_sft.json"
    path.write_text(json.dumps([records[0], unknown, swapped]))
    return path


def test_bad_records_fail_listing_each(tmp_path, data_dir):
    run = micro_run(tmp_path, data_dir, expert=ExpertConfig(source=str(bad_copy(tmp_path))))
    with EnvironmentPool() as envs, pytest.raises(EtoFormatError) as err:
        generate_expert_data(run, envs)
    assert "bad_sft.json" in str(err.value) and "'20_61'" in str(err.value)
    assert "conversations[3].from" in str(err.value)
    # the unknown id is listed too, though matching runs after reading (one error, every bad record)
    assert "record '11_99999' (index 1), field 'id': unknown task id" in str(err.value)
    assert sorted({p.index for p in err.value.problems}) == [1, 2]


def test_bad_records_skipped_and_counted(tmp_path, data_dir):
    path = bad_copy(tmp_path)
    run = micro_run(tmp_path, data_dir, expert=ExpertConfig(source=str(path), on_bad_record="skip"))
    with EnvironmentPool() as envs:
        result = generate_expert_data(run, envs)
    assert [t.task_id for t in read_trajectories(run.layout.expert_jsonl)] == ["find-animal/0"]
    assert result.metrics["expert_bad_records"] == 2
    assert any("unknown task id" in line for line in result.metadata["bad_records"])


def test_eto_prompt_dir_setting(tmp_path, data_dir):
    prompts = tmp_path / "prompts"
    for sub, name in (("instructions", "_inst.txt"), ("icl_examples", "_icl.json")):
        (prompts / sub).mkdir(parents=True)
        shutil.copy(FIXTURES / "prompts" / sub / f"lamplighter{name}", prompts / sub / f"sciworld{name}")
    run = micro_run(
        tmp_path,
        data_dir,
        expert=ExpertConfig(source=str(MICRO_SFT)),
        prompt=PromptConfig(eto_prompt_dir=str(prompts)),
    )
    with EnvironmentPool() as envs:
        generate_expert_data(run, envs)
    book = json.loads(run.layout.prompt_book.read_text())
    assert book["instruction"] == (prompts / "instructions" / "sciworld_inst.txt").read_text(encoding="utf-8")
    icl = json.loads((prompts / "icl_examples" / "sciworld_icl.json").read_text())
    assert [m["content"] for m in book["examples"]["*"]] == [t["content"] for t in icl[0]]
