"""The sensor reruns a task's graph when its base model or expert source changes, only for tasks
that have run before, once per change."""

import json

from dagster import AssetMaterialization, DagsterInstance, build_sensor_context

from jobs.eto import eto_inputs_changed
from resources import EtoSettings


def evaluate(instance, cursor, base_model):
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"settings": EtoSettings(profile="micro", base_model=base_model)},
    )
    result = eto_inputs_changed(context)
    return [r.partition_key for r in result.run_requests or []], result.cursor


def test_a_changed_base_model_reruns_tasks_that_ran(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(AssetMaterialization("expert_trajectories", partition="sciworld"))
        requests, cursor = evaluate(instance, None, str(model))
        assert requests == []  # first look: remember, do not rerun
        assert evaluate(instance, cursor, str(model))[0] == []  # nothing changed
        (model / "config.json").write_text(json.dumps({"hidden_size": 16}))  # the model was replaced
        requests, cursor = evaluate(instance, cursor, str(model))
        assert requests == ["sciworld"]  # alfworld and webshop never ran
        assert evaluate(instance, cursor, "tiny")[0] == ["sciworld"]  # the setting itself changed
