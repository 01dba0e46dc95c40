"""The code location loads, the asset graph has ETO's lineage, and everything in it is derived from
the one stage table (asset names spelled in one module only, every asset versioned)."""

import ast

from dagster import AssetKey

from eto_assets.assets.table import settings_groups, stage_table
from eto_assets.definitions import build_definitions, defs
from tests.conftest import REPO


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


def parents(graph) -> dict[str, set[str]]:
    return {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
        for k in graph.get_all_asset_keys()
    }


def test_lineage_is_unrolled_per_iteration():
    graph = build_definitions(iterations=3).resolve_asset_graph()
    deps = {k: {p for p in v if not p.startswith("settings/")} for k, v in parents(graph).items()}
    assert deps["base_model/checkpoint"] == {"expert_trajectories"}  # the tiny model learns its text
    assert deps["sft_checkpoint"] == {"expert_trajectories", "base_model/checkpoint"}
    assert deps["iteration_0/eval_report"] == {"sft_checkpoint", "expert_trajectories"}
    assert deps["iteration_1/exploration_rollouts"] == {"sft_checkpoint", "expert_trajectories"}
    assert deps["iteration_3/exploration_rollouts"] == {"iteration_2/dpo_checkpoint", "expert_trajectories"}
    assert deps["iteration_2/preference_pairs"] == {"iteration_2/exploration_rollouts", "expert_trajectories"}
    assert deps["iteration_2/dpo_checkpoint"] == {
        "iteration_2/preference_pairs",
        "iteration_1/dpo_checkpoint",
    }
    assert deps["iteration_2/eval_report"] == {"iteration_2/dpo_checkpoint", "expert_trajectories"}
    # the untrained model does not depend on how SFT trains
    assert deps["base_model/eval_report"] == {"expert_trajectories", "base_model/checkpoint"}
    evals = {f"iteration_{k}/eval_report" for k in range(4)}
    methods = {"best_of_n/eval_report", "rft/eval_report", "rl/eval_report", "selfplay_rft/eval_report"}
    methods |= {f"selfplay_{m}/iteration_{k}/eval_report" for m in ("eto", "rft_eto") for k in range(1, 4)}
    step_methods = ("eto_step", "eto_mixture", "stepagent", "ipr")
    methods |= {f"{m}/iteration_{k}/eval_report" for m in step_methods for k in range(1, 4)}
    methods |= {"stepagent_irl/eval_report"}
    assert deps["iteration_report"] == {"base_model/eval_report"} | evals | methods
    # every other method branches from the stage it shares: SFT, or the base model for self-play
    assert deps["best_of_n/eval_report"] == {"sft_checkpoint", "expert_trajectories"}
    assert deps["rft/samples"] == {"sft_checkpoint", "expert_trajectories"}
    assert deps["rft/checkpoint"] == {"rft/samples", "expert_trajectories", "base_model/checkpoint"}
    assert deps["rl/checkpoint"] == {"sft_checkpoint", "expert_trajectories"}
    assert deps["selfplay_eto/iteration_1/exploration_rollouts"] == {
        "base_model/checkpoint",
        "expert_trajectories",
    }
    assert deps["selfplay_eto/iteration_2/dpo_checkpoint"] == {
        "selfplay_eto/iteration_2/preference_pairs",
        "selfplay_eto/iteration_1/dpo_checkpoint",
    }
    assert deps["selfplay_rft_eto/iteration_1/exploration_rollouts"] == {
        "selfplay_rft/checkpoint",
        "expert_trajectories",
    }
    # the step-level methods start from SFT and branch from the expert's steps; IPR values the steps
    # with the frozen SFT policy, whatever iteration it is in
    for method in ("eto_step", "eto_mixture", "ipr"):
        assert deps[f"{method}/iteration_1/exploration_rollouts"] == {"sft_checkpoint", "expert_trajectories"}
    assert deps["stepagent/iteration_2/step_proposals"] == {
        "stepagent/iteration_1/dpo_checkpoint",
        "expert_trajectories",
    }
    assert deps["ipr/iteration_2/step_values"] == {
        "ipr/iteration_2/exploration_rollouts",
        "sft_checkpoint",
        "expert_trajectories",
    }
    assert deps["ipr/iteration_2/preference_pairs"] == {
        "ipr/iteration_2/exploration_rollouts",
        "ipr/iteration_2/step_values",
        "expert_trajectories",
    }
    assert deps["eto_mixture/iteration_3/dpo_checkpoint"] == {
        "eto_mixture/iteration_3/preference_pairs",
        "eto_mixture/iteration_2/dpo_checkpoint",
    }
    # StepAgent's inverse-RL form: proposals of SFT, a discriminator on them, RL from SFT with it
    assert deps["stepagent_irl/discriminator_checkpoint"] == {
        "stepagent_irl/step_proposals",
        "expert_trajectories",
    }
    assert deps["stepagent_irl/checkpoint"] == {
        "stepagent_irl/discriminator_checkpoint",
        "sft_checkpoint",
        "expert_trajectories",
    }
    partitions = graph.get(AssetKey("expert_trajectories")).partitions_def.get_partition_keys()
    assert partitions == ["sciworld", "alfworld", "webshop"]


def test_each_stage_depends_on_the_settings_it_reads_only():
    deps = parents(build_definitions(iterations=2).resolve_asset_graph())
    settings = {k: {p for p in v if p.startswith("settings/")} for k, v in deps.items()}
    assert settings["expert_trajectories"] == {"settings/expert"}
    assert settings["sft_checkpoint"] == {"settings/sft"}  # not DPO's, not the rollout's
    assert settings["iteration_1/exploration_rollouts"] == {"settings/rollout", "settings/iteration_1"}
    assert settings["iteration_2/dpo_checkpoint"] == {"settings/iteration_2", "settings/dpo_2"}
    assert settings["base_model/eval_report"] == {"settings/rollout", "settings/evaluate_base_model"}


def test_every_asset_comes_from_the_table_with_a_code_version():
    n = 2
    graph = build_definitions(iterations=n).resolve_asset_graph()
    table, groups = stage_table(n), settings_groups(n)
    materializable = {k.to_user_string() for k in graph.materializable_asset_keys}
    assert materializable == {spec.key for spec in table}
    observable = {k.to_user_string() for k in graph.observable_asset_keys}
    assert observable == {group.key for group in groups}
    for spec in table:
        assert graph.get(AssetKey.from_user_string(spec.key)).code_version == spec.code_version


def string_literals(path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_each_asset_name_is_spelled_in_one_module_only():
    """The graph is declared once: no other module of the project writes an asset's key."""
    names = {spec.key for spec in stage_table(2)}
    names |= {key.rpartition("/")[2] for key in names if "/" in key} - {"checkpoint"}
    allowed = REPO / "eto_assets" / "assets" / "table.py"
    offenders = {}
    for folder in ("eto_assets", "jobs", "resources"):
        for path in (REPO / folder).rglob("*.py"):
            if path == allowed:
                continue
            found = names & string_literals(path)
            if found:
                offenders[str(path.relative_to(REPO))] = sorted(found)
    assert not offenders, f"asset names spelled outside the stage table: {offenders}"
