"""Prepacked linear layers: the inference backend's answers and logits are those of the plain
model, on the sharp tiny model (answers hinge on every weight) and on SmolLM2 in bf16."""

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from eto_assets.agent.backends import GenerationConfig, TransformersBackend
from eto_assets.agent.packed_linear import PackedLinear, prepack_linears, prepacking_available
from eto_assets.agent.prompt import build_conversation


def real_conversations(book, expert_sample, turns: int = 2):
    return [build_conversation(book, t.task_type, t.messages[: 2 * turns - 1]) for t in expert_sample]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_prepacked_backend_answers_and_logits_equal_the_plain_model(
    sharp_model_dir, tiny_model_dir, expert_sample, dtype
):
    if not prepacking_available(getattr(torch, dtype)):
        pytest.skip(f"this CPU has no oneDNN packed linear in {dtype}")
    _, book = tiny_model_dir
    plain = TransformersBackend(sharp_model_dir, dtype=dtype, prepack=False)
    packed = TransformersBackend(sharp_model_dir, dtype=dtype, max_batch_size=4)
    linears = sum(type(m) is nn.Linear for m in plain.model.modules())
    assert plain.prepacked == 0 and packed.prepacked == linears > 0
    assert not any(type(m) is nn.Linear for m in packed.model.modules())

    convs = real_conversations(book, expert_sample)
    ids = torch.tensor([plain._encode(convs[0])])
    with torch.inference_mode():
        want, got = plain.model(ids).logits, packed.model(ids).logits
    torch.testing.assert_close(got, want, atol=1e-4 if dtype == "float32" else 2e-2, rtol=0)
    config = GenerationConfig(max_new_tokens=12)
    assert packed.generate(convs, config) == plain.generate(convs, config)


def test_smollm2_bf16_greedy_answers_unchanged(real_model_dir, tiny_model_dir, expert_sample):
    if not prepacking_available(torch.bfloat16):
        pytest.skip("this CPU has no oneDNN packed linear in bfloat16")
    _, book = tiny_model_dir
    convs = real_conversations(book, expert_sample)
    config = GenerationConfig(max_new_tokens=24)
    plain = TransformersBackend(real_model_dir, dtype="bfloat16", prepack=False, threads=1)
    want = plain.generate(convs, config)
    del plain
    packed = TransformersBackend(real_model_dir, dtype="bfloat16", threads=1)
    assert packed.prepacked == 7 * packed.model.config.num_hidden_layers + 1  # the LM head too
    assert packed.generate(convs, config) == want
    # the tied embedding keeps its own weight: the LM head got a packed copy
    head = packed.model.get_output_embeddings()
    assert isinstance(head, PackedLinear)
    assert packed.model.get_input_embeddings().weight.shape[0] == head.out_features


def test_a_model_in_training_mode_is_refused(sharp_model_dir):
    model = AutoModelForCausalLM.from_pretrained(sharp_model_dir).train()
    with pytest.raises(ValueError, match="training mode"):
        prepack_linears(model, 4)
