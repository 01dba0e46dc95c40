"""TRL's fused LM head, made to project only the positions that count on the CPU, gives the same
log-probs, entropies and gradients as projecting every position."""

import torch
import trl.trainer.utils as trl_utils
from transformers import LlamaConfig, LlamaForCausalLM
from trl.trainer.utils import add_fused_lm_head

from eto_assets.training.common import score_counted_positions_only


def fused_outputs(model, ids, labels, use_triton):
    original = trl_utils._use_triton
    trl_utils._use_triton = use_triton
    try:
        model.zero_grad()
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
        return out, model.lm_head.weight.grad.clone()
    finally:
        trl_utils._use_triton = original


def test_scoring_only_counted_positions_changes_nothing_but_the_work(monkeypatch):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    model = LlamaForCausalLM(config)
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    ids = torch.randint(0, 300, (2, 24))
    labels = ids.clone()
    labels[:, :15] = -100  # prompt and observations: not counted
    labels[1, 20:] = -100

    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)  # restored after the test
    every, every_grad = fused_outputs(model, ids, labels, lambda device: False)
    score_counted_positions_only()
    assert trl_utils._use_triton(torch.device("cpu"))  # now compact on the CPU
    counted, counted_grad = fused_outputs(model, ids, labels, trl_utils._use_triton)

    assert torch.equal(every.label_mask, counted.label_mask)
    torch.testing.assert_close(counted.log_probs, every.log_probs)
    torch.testing.assert_close(counted.entropy, every.entropy)
    torch.testing.assert_close(counted.loss, every.loss)
    torch.testing.assert_close(counted_grad, every_grad)
    assert (counted.log_probs[~counted.label_mask] == 0).all()
    assert counted.log_probs[counted.label_mask].lt(0).all()


def test_the_switch_is_applied_once(monkeypatch):
    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)
    score_counted_positions_only()
    first = trl_utils._use_triton
    score_counted_positions_only()
    assert trl_utils._use_triton is first  # not wrapped twice
