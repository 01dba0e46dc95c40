"""The ``medium`` profile is the size the learning benchmark needs to tell a gain from noise: at
least 8 ScienceWorld task types and 60 held-out tasks per split, taken first-per-type in ETO's
order, and ALFWorld's six types with as many games; the real model's profile, refused with the
tiny model."""

from __future__ import annotations

from collections import Counter

import pytest

from eto_assets import stages
from eto_assets.config.profile import ProfileError, check_profile_for_model, load_profile
from eto_assets.envs.registry import BenchmarkSources


@pytest.mark.parametrize(("task", "types"), [("sciworld", 8), ("alfworld", 6)])
def test_medium_has_enough_held_out_tasks_of_enough_types(task, types, data_dir, tmp_path):
    profile = load_profile("medium")
    run = stages.open_task_run(task, profile, BenchmarkSources(home=tmp_path, data_dir=data_dir))
    for split in ("seen", "unseen"):
        tasks = run.tasks(split)
        by_type = Counter(t.task_type for t in tasks)
        assert len(tasks) >= 60 and len(by_type) >= types, (split, by_type)
        assert len(set(by_type.values())) == 1  # the same number of each type: first N per type
    assert run.scope.max_steps_cap > load_profile("small").scope("sciworld").max_steps_cap
    with pytest.raises(ProfileError, match="'medium' is for a pretrained model"):
        check_profile_for_model(profile, "tiny")
