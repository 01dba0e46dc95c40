"""The code location loads, and the asset graph has ETO's lineage."""

from dagster import AssetKey

from eto_assets.definitions import build_definitions, defs


def test_definitions_load_with_job_schedules_sensor_and_checks():
    assert defs.resolve_job_def("eto_job") is not None
    for task in ("sciworld", "alfworld", "webshop"):
        assert defs.resolve_schedule_def(f"eto_weekly_{task}").default_status.value == "STOPPED"
    assert defs.resolve_sensor_def("eto_inputs_changed") is not None
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("expert_trajectories", "expert_rewards") in checks
    assert ("iteration_1/eval_report", "no_regression") in checks
    assert ("iteration_1/dpo_checkpoint", "checkpoint_generates") in checks


def test_lineage_is_unrolled_per_iteration():
    graph = build_definitions(iterations=3).resolve_asset_graph()
    deps = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
        for k in graph.get_all_asset_keys()
    }
    assert deps["sft_checkpoint"] == {"expert_trajectories"}
    assert deps["iteration_0/eval_report"] == {"sft_checkpoint"}
    assert deps["iteration_1/exploration_rollouts"] == {"sft_checkpoint", "expert_trajectories"}
    assert deps["iteration_3/exploration_rollouts"] == {"iteration_2/dpo_checkpoint", "expert_trajectories"}
    assert deps["iteration_2/preference_pairs"] == {"iteration_2/exploration_rollouts", "expert_trajectories"}
    assert deps["iteration_2/dpo_checkpoint"] == {
        "iteration_2/preference_pairs",
        "iteration_1/dpo_checkpoint",
    }
    assert deps["iteration_2/eval_report"] == {"iteration_2/dpo_checkpoint"}
    assert deps["iteration_summary"] == {f"iteration_{k}/eval_report" for k in range(4)}
    # the untrained model: after SFT (which builds the tiny one), compared beside every policy
    assert deps["base_model/eval_report"] == {"expert_trajectories", "sft_checkpoint"}
    assert deps["iteration_comparison"] == {"base_model/eval_report"} | deps["iteration_summary"]
    partitions = graph.get(AssetKey("expert_trajectories")).partitions_def.get_partition_keys()
    assert partitions == ["sciworld", "alfworld", "webshop"]
