import pytest

from eto_assets.config.profile import CONFIG_DIR as REPO_CONFIGS
from eto_assets.config.profile import ProfileError, check_profile_for_model, load_profile


@pytest.mark.parametrize("name", ["micro", "tiny", "small", "paper"])
def test_shipped_profiles_load(name):
    profile = load_profile(name)
    assert profile.sft.learning_rate > 0


def test_paper_profile_follows_etos_protocol():
    p = load_profile("paper")
    sft = (p.sft.learning_rate, p.sft.batch_size, p.sft.num_train_epochs, p.sft.warmup_steps)
    assert sft == (2e-5, 64, 3, 0.03)  # run_eto.sh's lr; the paper's text says 1e-5 (see the yaml)
    assert (p.dpo.batch_size, p.dpo.num_train_epochs, p.dpo.warmup_steps) == (32, 3, 0.1)
    assert p.dpo.lr_scheduler_type == "constant_with_warmup"
    assert all(p.iterations_for(t) == 3 for t in ("sciworld", "alfworld", "webshop"))
    schedule = [(p.dpo_for("sciworld", k).beta, p.dpo_for("sciworld", k).learning_rate) for k in (1, 2, 3)]
    assert schedule == [(0.1, 1e-6), (0.5, 5e-7), (0.5, 5e-7)]
    # run_eto.sh's schedule for every task, ALFWorld included (the paper's text says 0.5 for it)
    assert [p.dpo_for("alfworld", k).beta for k in (1, 2, 3)] == [0.1, 0.5, 0.5]
    paper_beta = type(p).model_validate({**p.model_dump(), "tasks": {"alfworld": {"dpo_beta": 0.5}}})
    assert paper_beta.dpo_for("alfworld", 1).beta == 0.5  # a task's own beta wins over the schedule
    assert p.rollout.max_new_tokens == 512 and p.prompt.layout == "eto"
    assert p.scope("webshop").catalog == "upstream"


def test_dpo_schedule_overrides_and_errors(tmp_path):
    base = (
        "sft: {learning_rate: 1, num_train_epochs: 1, batch_size: 1}\n"
        "dpo: {learning_rate: 1.0e-6, num_train_epochs: 1, batch_size: 1, beta: 0.1}\n"
    )
    good = tmp_path / "good.yaml"
    good.write_text(base + "dpo_schedule: {3: {beta: 0.5}}\n")
    p = load_profile(str(good))
    assert [p.dpo_for("webshop", k).beta for k in (1, 2, 3, 4)] == [0.1, 0.1, 0.5, 0.5]
    assert p.dpo_for("webshop").beta == 0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "dpo_schedule: {2: {beta: -1}}\n")
    with pytest.raises(ProfileError, match=r"bad.yaml: .*dpo_schedule.2: beta"):
        load_profile(str(bad))
    bad.write_text(base + "dpo_schedule: {2: {betta: 1}}\n")
    with pytest.raises(ProfileError, match=r"dpo_schedule.2: betta"):
        load_profile(str(bad))


def test_gradient_accumulation_divides_by_processes():
    from eto_assets.config.training import TrainConfig

    c = TrainConfig(learning_rate=1, num_train_epochs=1, batch_size=64, per_device_train_batch_size=4)
    assert c.gradient_accumulation_steps(1) == 16
    assert c.gradient_accumulation_steps(8) == 2  # global batch stays 64 on 8 GPUs (ETO: 64 / 4 / GPUs)
    with pytest.raises(ValueError, match="not a multiple"):
        c.gradient_accumulation_steps(3)


def test_warmup_that_rounds_to_zero_steps_stays_zero(monkeypatch):
    from pathlib import Path

    from eto_assets.config.training import TrainConfig
    from eto_assets.training.common import optimizer_steps, trainer_kwargs

    c = TrainConfig(learning_rate=1, num_train_epochs=2, batch_size=4, per_device_train_batch_size=2)
    assert optimizer_steps(c, 32, 1) == 16  # 8 batches of 4 per epoch, 2 epochs
    assert c.warmup_steps_for(16) == 0  # 0.03 x 16 = 0.48 steps: zero, not transformers' one
    assert c.warmup_steps_for(100) == 0.03
    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch sets it
    kwargs = trainer_kwargs(c, Path("/tmp/x"), num_examples=32)
    assert kwargs["gradient_accumulation_steps"] == 1 and kwargs["warmup_steps"] == 0


def test_invalid_value_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sft: {learning_rate: -1, num_train_epochs: 1, batch_size: 1}\n"
        "dpo: {learning_rate: 1, num_train_epochs: 1, batch_size: 1}\n"
    )
    with pytest.raises(ProfileError, match=r"bad.yaml: sft.learning_rate"):
        load_profile(str(bad))


def test_prompt_layout_setting(tmp_path):
    assert load_profile("tiny").prompt.layout == "eto"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sft: {learning_rate: 1, num_train_epochs: 1, batch_size: 1}\n"
        "dpo: {learning_rate: 1, num_train_epochs: 1, batch_size: 1}\n"
        "prompt: {layout: nested}\n"
    )
    with pytest.raises(ProfileError, match=r"prompt.layout"):
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
    with pytest.raises(ProfileError, match=r"typo.yaml: tasks.minecraft: unknown key: .*'sciworld'") as exc:
        load_profile(str(bad))
    assert "\n" not in str(exc.value)


def test_unknown_profile_name():
    with pytest.raises(ProfileError, match="known profiles"):
        load_profile("huge")


def test_nano_fixture_loads():
    from tests.conftest import REPO

    assert load_profile(str(REPO / "tests" / "fixtures" / "nano.yaml")).name == "nano"


BASE = (
    "sft: {learning_rate: 1, num_train_epochs: 1, batch_size: 1}\n"
    "dpo: {learning_rate: 1, num_train_epochs: 1, batch_size: 1}\n"
)


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("model: huge", "model"),
        ("expert: {on_bad_record: ignore}", "expert.on_bad_record"),
        ("prompt: {layout: nested}", "prompt.layout"),
        ("tasks: {webshop: {catalog: amazon}}", "tasks.webshop.catalog"),
        (
            "sft: {learning_rate: 1, num_train_epochs: 1, batch_size: 1, lr_scheduler_type: cosine-ish}",
            "sft.lr_scheduler_type",
        ),
    ],
)
def test_a_refused_choice_is_one_line_naming_file_field_and_value(tmp_path, setting, field):
    bad = tmp_path / "choice.yaml"
    lines = [line for line in BASE.splitlines() if not line.startswith(setting.split(":")[0] + ":")]
    bad.write_text("\n".join([*lines, setting]) + "\n")
    with pytest.raises(ProfileError) as exc:
        load_profile(str(bad))
    message = str(exc.value)
    given = setting.rstrip("}").rsplit(": ", 1)[-1]
    assert message.startswith(f"profile file {bad}: {field}: Input should be ")
    assert f"got {given!r}" in message and "\n" not in message


def test_dpo_schedule_refuses_an_unknown_scheduler(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE + "dpo_schedule: {2: {lr_scheduler_type: cosine-ish}}\n")
    with pytest.raises(ProfileError, match=r"bad.yaml: .*dpo_schedule.2: lr_scheduler_type: .*'cosine-ish'"):
        load_profile(str(bad))


def test_model_kind_must_match_the_base_model():
    check_profile_for_model(load_profile("tiny"), "tiny")
    check_profile_for_model(load_profile("paper"), "/models/llama-2-7b-chat")
    with pytest.raises(ProfileError, match="use a profile for pretrained models"):
        check_profile_for_model(load_profile("tiny"), "/models/llama-2-7b-chat")
    with pytest.raises(ProfileError, match="set base_model"):
        check_profile_for_model(load_profile("paper"), "tiny")


def test_every_offered_lr_scheduler_builds_with_the_pipelines_arguments():
    """The Literal offers only transformers' schedules that need nothing beyond the warm-up and the
    step count (what the trainer passes), so a profile that loads also trains."""
    from typing import get_args

    import torch
    from transformers import SchedulerType, get_scheduler

    from eto_assets.config.training import LrSchedulerType

    offered = get_args(LrSchedulerType)
    assert set(offered) <= {s.value for s in SchedulerType}
    for name in offered:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=1, num_training_steps=10)
        optimizer.step()
        scheduler.step()


def test_selection_setting_paper_follows_eto_small_profiles_choose_on_seen(tmp_path):
    """`paper` reports every iteration on test and names the last champion (run_eto.sh); the small
    profiles keep choosing on the seen split; the report states a rule for every choice offered."""
    from eto_assets.stages.report import SELECTION_RULES

    assert load_profile("paper").selection == "final"
    assert {load_profile(n).selection for n in ("micro", "tiny", "small")} == {"seen"}
    choices = set(type(load_profile("paper")).model_fields["selection"].annotation.__args__)
    assert choices == {"seen", "seen_not_in_train", "final"} == set(SELECTION_RULES)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "selection: test\n"
        "sft: {learning_rate: 1, num_train_epochs: 1, batch_size: 1}\n"
        "dpo: {learning_rate: 1.0e-6, num_train_epochs: 1, batch_size: 1, beta: 0.1}\n"
    )
    with pytest.raises(ProfileError, match="selection: .*got 'test'"):
        load_profile(str(bad))


def test_methods_need_their_start(tmp_path):
    """A method runs only with the one it starts from, and a method name is one of the known ones."""
    base = (REPO_CONFIGS / "micro.yaml").read_text()
    path = tmp_path / "methods.yaml"
    path.write_text(base.replace("methods: [eto]", "methods: [eto, selfplay_rft_eto]"))
    with pytest.raises(ProfileError, match="selfplay_rft_eto starts from selfplay_rft's policy"):
        load_profile(path)
    path.write_text(base.replace("methods: [eto]", "methods: [eto, ppo]"))
    with pytest.raises(ProfileError, match=r"methods.1: .*'ppo'"):
        load_profile(path)
    path.write_text(base.replace("methods: [eto]", "methods: [selfplay_rft, selfplay_rft_eto]"))
    assert load_profile(path).methods == ["selfplay_rft", "selfplay_rft_eto"]
    assert load_profile("micro").methods == ["eto"]  # ETO alone by default
