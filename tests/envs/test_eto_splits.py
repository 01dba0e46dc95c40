"""ETO's split index files: counts, the train/dev overlap, name mapping and per-type subsets."""

import json
from collections import Counter

import pytest

from eto_assets.envs.eto_splits import (
    ENGINE_TASK_NAMES,
    EtoSplitsNotFound,
    SciWorldItem,
    engine_task_name,
    first_per_type,
    load_sciworld_eto_splits,
    load_webshop_eto_splits,
    resolve_data_dir,
)


@pytest.fixture(scope="module")
def sciworld(data_dir):
    return load_sciworld_eto_splits(data_dir)


@pytest.fixture(scope="module")
def webshop(data_dir):
    return load_webshop_eto_splits(data_dir)


def test_sciworld_counts_and_overlap(sciworld):
    assert (len(sciworld.train), len(sciworld.dev), len(sciworld.test)) == (1483, 194, 211)
    # ETO's quirk, kept: 54 train items are also dev items; test is disjoint from both
    assert len(sciworld.train_dev_overlap) == 54
    assert not set(sciworld.test) & (set(sciworld.train) | set(sciworld.dev))
    assert len(set(sciworld.train)) == 1483  # no duplicates within a split


def test_sciworld_per_type_counts(sciworld):
    per_type = {s: Counter(i.task_name for i in sciworld.split(s)) for s in ("train", "dev", "test")}
    assert len(per_type["train"]) == 24  # the inclined-plane and genetics families are absent
    assert [per_type[s]["boil"] for s in ("train", "dev", "test")] == [14, 6, 9]
    assert [per_type[s]["identify-life-stages-2"] for s in ("train", "dev", "test")] == [4, 2, 4]
    assert [per_type[s]["lifespan-longest-lived"] for s in ("train", "dev", "test")] == [83, 10, 10]
    # every name ETO numbers (29, five of them in no split) is one of the engine's tasks
    assert len({engine_task_name(n) for n in sciworld.taskname2id} & set(ENGINE_TASK_NAMES)) == 29


def test_names_map_to_the_engine():
    assert engine_task_name("task-1-boil") == "boil"
    assert engine_task_name("task-6-lifespan-(longest-lived)") == "lifespan-longest-lived"
    assert engine_task_name("task-2a-test-conductivity-of-unknown-substances") == (
        "test-conductivity-of-unknown-substances"
    )
    assert engine_task_name("task-9-mendellian-genetics-(known-plant)") == "mendelian-genetics-known-plant"
    with pytest.raises(ValueError, match="not a ScienceWorld task"):
        engine_task_name("task-99-juggling")


def test_engine_names_match_installed_scienceworld():
    constants = pytest.importorskip("scienceworld.constants", reason="scienceworld not installed")
    assert tuple(task["task_name"] for task in constants.TASKS) == ENGINE_TASK_NAMES


def test_eto_record_ids(sciworld):
    item = SciWorldItem("task-3-find-animal", "find-animal", 0)
    assert sciworld.eto_id(item) == "11_0" and item.task_id == "find-animal/0"
    resolver = sciworld.record_resolver()
    assert resolver["11_0"] == "find-animal/0"
    # one entry per distinct (task, variation) over the three splits
    assert len(resolver) == 1483 + 194 + 211 - 54


def test_webshop_counts(webshop):
    assert (len(webshop.train), len(webshop.test)) == (1824, 200)
    assert len(set(webshop.train)) == 1823 and webshop.duplicates("train") == {4116: 2}
    assert webshop.duplicates("test") == {}
    assert len(webshop.train_test_overlap) == 21


def test_first_per_type_is_deterministic_nested_and_in_eto_order(sciworld):
    two = first_per_type(sciworld.train, 2)
    five = first_per_type(sciworld.train, 5)
    assert len(two) == 48 and set(two) <= set(five)
    assert two[0] == sciworld.train[0]  # ETO's own order, not re-sorted
    assert Counter(i.task_name for i in five)["identify-life-stages-2"] == 4  # fewer exist
    boil = [i for i in sciworld.train if i.task_name == "boil"]
    assert [i for i in two if i.task_name == "boil"] == boil[:2]
    assert first_per_type([5, 3, 5, 9], 2) == [5, 3]  # no task_name: one type (WebShop goals)
    assert first_per_type(sciworld.dev, 0) == []
    with pytest.raises(ValueError):
        first_per_type([], -1)


def test_missing_files_name_the_file_and_eto_data_dir(tmp_path, monkeypatch):
    with pytest.raises(EtoSplitsNotFound, match=r"taskname2id\.json.*ETO_DATA_DIR"):
        load_sciworld_eto_splits(tmp_path)
    folder = tmp_path / "webshop" / "eto_splits"
    folder.mkdir(parents=True)
    (folder / "train_indices.json").write_text(json.dumps([1, 2]))
    with pytest.raises(FileNotFoundError, match=r"test_indices\.json.*ETO_DATA_DIR"):
        load_webshop_eto_splits(tmp_path)
    with pytest.raises(EtoSplitsNotFound, match="set ETO_DATA_DIR"):
        resolve_data_dir()
    assert resolve_data_dir(tmp_path) == tmp_path


def test_malformed_split_file(tmp_path):
    folder = tmp_path / "sciworld" / "eto_splits"
    folder.mkdir(parents=True)
    (folder / "taskname2id.json").write_text(json.dumps({"task-1-boil": 0}))
    (folder / "train_indices.json").write_text(json.dumps([["task-1-boil", 1], ["task-1-boil"]]))
    with pytest.raises(ValueError, match=r"train_indices\.json: entry 1"):
        load_sciworld_eto_splits(tmp_path)
