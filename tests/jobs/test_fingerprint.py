"""Which assets the CLI reruns: an asset the profile leaves out writes nothing, so its missing
artifacts do not make it (or what follows it) rerun."""

from eto_assets.config.profile import load_profile
from eto_assets.stages.layout import ArtifactLayout
from jobs.fingerprint import BASE_EVAL, inactive_assets, record_fingerprint, stage_fingerprints, stale_assets


def test_inactive_assets_are_the_base_evaluation_and_iterations_past_the_profile():
    micro = load_profile("micro")  # 1 iteration, no base-model evaluation
    assert not micro.evaluate_base_model
    inactive = inactive_assets(micro, "sciworld", 2)
    assert BASE_EVAL in inactive and "iteration_2/dpo_checkpoint" in inactive
    assert not any(key.startswith("iteration_1/") for key in inactive)
    assert BASE_EVAL not in inactive_assets(load_profile("small"), "sciworld", 1)


def test_a_left_out_asset_is_not_rerun_for_its_missing_artifacts(tmp_path):
    for evaluate_base_model, expected in ((False, "up to date"), (True, "artifact missing")):
        home = tmp_path / str(evaluate_base_model)
        profile = load_profile("micro").model_copy(update={"evaluate_base_model": evaluate_base_model})
        current = stage_fingerprints(
            profile, "sciworld", base_model="tiny", backend="transformers", iterations=1
        )
        for key, value in current.items():  # every asset materialized with these settings ...
            record_fingerprint(home, "sciworld", key, value)
        expert = ArtifactLayout(home, "sciworld").expert_jsonl
        expert.parent.mkdir(parents=True)
        expert.write_text("")  # ... but only the expert data is still there
        stale, reasons = stale_assets(home, "sciworld", current, 1, inactive_assets(profile, "sciworld", 1))
        assert reasons["expert_trajectories"].startswith("up to date")
        assert "sft_checkpoint" in stale
        assert reasons[BASE_EVAL].startswith(expected)
