"""Importing an SFT file in ETO's layout: every kind of record, judged on the real engines.

Each fixture (``tests/fixtures/eto_layout/data/record_kinds_<benchmark>_sft.json``, hand-made in
ETO's layout) holds records of the train list, real tasks outside it, dev and test tasks, ids the
engine does not have, and malformed records. ETO trains on every record of its SFT file, so a real
task outside the train list is kept (and counted); a dev or test task is refused by name, because
training on it would train on the evaluation; only an id the engine lacks is called unknown. With
``on_bad_record: fail`` one error lists every refused, unknown and malformed record of the file.
The engines are the real ones: ScienceWorld's JVM (variation counts), the ALFWorld games of the
data folder, and the WebShop benchmark on a catalog laid out like the upstream one with ETO-style
goal-index splits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eto_assets.config.profile import ExpertConfig, load_profile
from eto_assets.data.eto_format import EtoFormatError
from eto_assets.data.schemas import read_trajectories
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.registry import BenchmarkSources
from eto_assets.stages import generate_expert_data, open_task_run
from eto_assets.stages.expert import import_experts
from eto_assets.stages.layout import ArtifactLayout
from eto_assets.stages.task import TaskRun

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eto_layout" / "data"
ALF_TRAIN = "train/look_at_obj_in_light-AlarmClock-None-DeskLamp-"

# Per benchmark: indices of each kind in its fixture, and the task ids the kept records train on.
KINDS = {
    "sciworld": {
        "train": [0, 1, 2],  # 11_0, 20_2, and 20_80 (in ETO's train and dev lists: ETO trains on it)
        "outside": [3, 4],  # find-animal 5 (engine train) and 250 (engine test, in no ETO list)
        "held_out": [5, 6],  # ETO dev 11_159, ETO test 11_225
        "unknown": [7, 8],  # no task number 99; find-animal has variations 0-299
        "malformed": [9, 10, 11, 12, 13, 14],
    },
    "alfworld": {
        "train": [0, 1],
        "outside": [],  # ETO's ALFWorld train list is every playable train game: none on disk is outside
        "held_out": [2, 3],  # valid_seen, valid_unseen
        "unknown": [4, 5],  # no such task folder; a real task folder without that trial
        "malformed": [6, 7, 8, 9, 10, 11],  # no game_file, not a game path, reward, empty, order, non-object
    },
    "webshop": {
        "train": [0, 1, 2],  # goal 12 twice (as ETO's file holds 4116 twice), goal 20
        "outside": [3, 4],  # goals 100 and 200: in the catalog, in no split list
        "held_out": [5, 6],  # goal 15 (the dev slice held out of ETO's train goals), goal 3 (test)
        "unknown": [7, 8],  # goal 4116 (the catalog has 250), "B0C1XYZ" (not a goal index)
        "malformed": [9, 10, 11, 12, 13, 14],
    },
}
KEPT_TASKS = {
    "sciworld": [
        "find-animal/0",
        "lifespan-longest-lived/2",
        "lifespan-longest-lived/80",
        "find-animal/5",
        "find-animal/250",
    ],
    "alfworld": [
        ALF_TRAIN + "302/trial_T20190908_192820_480968",
        ALF_TRAIN + "309/trial_T20190908_062818_332126",
    ],
    "webshop": ["train/12", "train/12", "train/20", "train/100", "train/200"],
}
HELD_OUT_SPLITS = {
    "sciworld": ["ETO dev (our 'seen')", "ETO test (our 'unseen')"],
    "alfworld": ["valid_seen (our 'seen')", "valid_unseen (our 'unseen')"],
    "webshop": ["held-out dev slice of the train goals ('seen')", "test ('unseen')"],
}


def fixture(benchmark: str) -> Path:
    return FIXTURES / f"record_kinds_{benchmark}_sft.json"


def profile(source: Path, on_bad_record: str):
    """The micro profile with no scope limit: every train task is in scope, as in ETO."""
    expert = ExpertConfig(source=str(source), on_bad_record=on_bad_record)
    return load_profile("micro").model_copy(update={"tasks": {}, "expert": expert})


def webshop_root(tmp_path: Path) -> Path:
    """A data root laid out like upstream WebShop (``webshop/data``, ``webshop/eto_splits``) over a
    generated catalog of 250 goals: train goals 10-39 (12 twice), test goals 0-9."""
    from eto_assets.envs.webshop.catalog import GENERATED_MARKER
    from eto_assets.envs.webshop.generator import generate_catalog

    root = tmp_path / "webshop_root"
    catalog = generate_catalog(tmp_path / "catalog")
    shutil.copytree(catalog, root / "webshop" / "data", ignore=shutil.ignore_patterns(GENERATED_MARKER))
    splits = root / "webshop" / "eto_splits"
    splits.mkdir()
    (splits / "train_indices.json").write_text(json.dumps([*range(10, 40), 12]))
    (splits / "test_indices.json").write_text(json.dumps(list(range(10))))
    return root


def task_run(benchmark: str, tmp_path: Path, data_dir: Path, on_bad_record: str) -> TaskRun:
    prof = profile(fixture(benchmark), on_bad_record)
    home = tmp_path / "home"
    if benchmark != "webshop":
        return open_task_run(benchmark, prof, BenchmarkSources(home=home, data_dir=data_dir))
    from eto_assets.envs.webshop.benchmark import WebShopBenchmark

    bench = WebShopBenchmark(data_dir=webshop_root(tmp_path), catalog="upstream")
    assert bench.splits_source == "eto" and len(bench.world.catalog.goals) == 250
    assert sorted(bench.split_indices["seen"]) == [15, 16, 30]  # the seeded dev slice the fixture uses
    return TaskRun("webshop", prof, ArtifactLayout(home, "webshop"), bench)


BENCHMARKS = ["sciworld", "alfworld", "webshop"]


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_skip_keeps_counts_refuses_and_rejects_each_kind(benchmark, tmp_path, data_dir):
    run = task_run(benchmark, tmp_path, data_dir, "skip")
    kinds = KINDS[benchmark]
    imported = import_experts(run, fixture(benchmark), run.tasks("train"))
    report = imported.report
    total = len(json.loads(fixture(benchmark).read_text()))
    kept = kinds["train"] + kinds["outside"]
    assert [t.task_id for t in imported.trajectories] == KEPT_TASKS[benchmark]
    assert [r.index for r in imported.records] == kept and imported.outside_scope == 0
    assert [o.index for o in report.outside] == kinds["outside"]
    by_kind = {k: sorted({p.index for p in report.problems if p.kind == k}) for k in kinds}
    assert by_kind["held_out"] == kinds["held_out"]
    assert by_kind["unknown"] == kinds["unknown"]
    assert by_kind["malformed"] == kinds["malformed"]
    assert (report.total, report.kept, len(report.outside), report.refused, report.bad) == (
        total,
        len(kept),
        len(kinds["outside"]),
        len(kinds["held_out"]),
        len(kinds["unknown"]) + len(kinds["malformed"]),
    )
    # a held-out record is refused by name, never called unknown; an unknown one says what is missing
    refusals = [p.reason for p in report.problems if p.kind == "held_out"]
    assert all(split in reason for split, reason in zip(HELD_OUT_SPLITS[benchmark], refusals, strict=True))
    assert all("train on the evaluation" in r and "unknown" not in r for r in refusals)
    assert all(p.reason.startswith("unknown task id") for p in report.problems if p.kind == "unknown")

    with EnvironmentPool() as envs:
        result = generate_expert_data(run, envs)
    assert [t.task_id for t in read_trajectories(run.layout.expert_jsonl)] == KEPT_TASKS[benchmark]
    metrics = result.metrics
    assert metrics["expert_count"] == len(kept)
    assert metrics["expert_outside_train_list"] == len(kinds["outside"])
    assert metrics["expert_refused_held_out"] == len(kinds["held_out"])
    assert metrics["expert_bad_records"] == len(kinds["held_out"]) + report.bad


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_fail_lists_every_bad_record_in_one_error(benchmark, tmp_path, data_dir):
    run = task_run(benchmark, tmp_path, data_dir, "fail")
    kinds = KINDS[benchmark]
    with EnvironmentPool() as envs, pytest.raises(EtoFormatError) as info:
        generate_expert_data(run, envs)
    err = info.value
    bad = sorted(kinds["held_out"] + kinds["unknown"] + kinds["malformed"])
    assert sorted({p.index for p in err.problems}) == bad
    message = str(err)
    total = len(json.loads(fixture(benchmark).read_text()))
    summary = f"({len(kinds['malformed'])} malformed, {len(kinds['unknown'])} unknown, 2 held out)"
    assert message.startswith(f"{fixture(benchmark)}: {len(bad)} of {total} records are bad {summary}:")
    records = json.loads(fixture(benchmark).read_text())
    for index in bad:  # each bad record is named by index, and by id when it has one
        rid = records[index].get("id") if isinstance(records[index], dict) else None
        named = f"record {rid!r} (index {index})" if rid is not None else f"record at index {index}"
        assert named in message
