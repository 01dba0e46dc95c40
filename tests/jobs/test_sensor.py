"""The sensor reruns the stale part of a task's graph when an outside input it watches (the base
model, the expert data) changes, only for tasks that have run before, once per change."""

import json

from dagster import AssetMaterialization, DagsterInstance, build_sensor_context

from eto_assets.definitions import build_definitions
from resources import EtoSettings, InferenceResource

DEFS = build_definitions(iterations=1)


def evaluate(instance, cursor, base_model, home):
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=DEFS,
        resources={
            "settings": EtoSettings(profile="micro", base_model=base_model, home=str(home)),
            "inference": InferenceResource(backend="transformers"),
        },
    )
    result = DEFS.resolve_sensor_def("eto_inputs_changed")(context)
    requests = {
        r.partition_key: sorted(k.to_user_string() for k in r.asset_selection)
        for r in result.run_requests or []
    }
    return requests, result.cursor


def test_a_changed_base_model_reruns_the_stale_part_of_tasks_that_ran(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(AssetMaterialization("expert_trajectories", partition="sciworld"))
        requests, cursor = evaluate(instance, None, str(model), tmp_path)
        # first look: nothing was materialized with these settings yet, so everything is stale
        assert list(requests) == ["sciworld"]  # alfworld and webshop never ran
        assert evaluate(instance, cursor, str(model), tmp_path)[0] == {}  # nothing changed since
        (model / "config.json").write_text(json.dumps({"hidden_size": 16}))  # the model was replaced
        requests, cursor = evaluate(instance, cursor, str(model), tmp_path)
        assert list(requests) == ["sciworld"]
        # the run observes every settings group and runs what Dagster calls stale
        assert "settings/base_model" in requests["sciworld"] and "sft_checkpoint" in requests["sciworld"]
        assert evaluate(instance, cursor, str(model), tmp_path)[0] == {}  # once per change
        assert list(evaluate(instance, cursor, "tiny", tmp_path)[0]) == ["sciworld"]  # the setting itself
