import pytest

from eto_assets.config.profile import ProfileError, load_profile


@pytest.mark.parametrize("name", ["micro", "tiny", "paper"])
def test_shipped_profiles_load(name):
    profile = load_profile(name)
    assert profile.sft.learning_rate > 0


def test_paper_profile_matches_paper():
    p = load_profile("paper")
    sft = (p.sft.learning_rate, p.sft.batch_size, p.sft.num_train_epochs, p.sft.warmup_steps)
    assert sft == (1e-5, 64, 3, 0.03)
    assert (p.dpo.learning_rate, p.dpo.batch_size, p.dpo.beta, p.dpo.num_train_epochs) == (1e-6, 32, 0.1, 3)
    assert p.dpo_for("alfworld").beta == 0.5 and p.iterations_for("alfworld") == 1
    assert p.iterations_for("sciworld") == 2


def test_invalid_value_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sft: {learning_rate: -1, num_train_epochs: 1, batch_size: 1}\n"
        "dpo: {learning_rate: 1, num_train_epochs: 1, batch_size: 1}\n"
    )
    with pytest.raises(ProfileError, match=r"bad.yaml: sft.learning_rate"):
        load_profile(str(bad))


def test_unknown_field_and_task(tmp_path):
    bad = tmp_path / "typo.yaml"
    base = (
        "sft: {learning_rate: 1, num_train_epochs: 1, batch_size: 1}\n"
        "dpo: {learning_rate: 1, num_train_epochs: 1, batch_size: 1}\n"
    )
    bad.write_text(base + "iteratons: 3\n")
    with pytest.raises(ProfileError, match="iteratons"):
        load_profile(str(bad))
    bad.write_text(base + "tasks: {minecraft: {}}\n")
    with pytest.raises(ProfileError, match="unknown tasks \\['minecraft'\\]"):
        load_profile(str(bad))


def test_unknown_profile_name():
    with pytest.raises(ProfileError, match="known profiles"):
        load_profile("huge")
