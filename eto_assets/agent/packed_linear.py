"""Linear layers with their weights reordered once into oneDNN's blocked layout, for CPU inference.

A decode step multiplies a few rows (one per episode in flight) by every weight matrix. A plain
``F.linear`` on CPU reorders each weight into oneDNN's blocked layout on every call, which at batch 8
costs more than the product (SmolLM2 in bf16: 35 ms of layers and 9 ms of LM head per step, against
21 ms and 4 ms prepacked; ``benchmarks/decode_step.py`` measures it on the real model). This is the
prepacking torch's own compiler (inductor with ``freezing``) applies, without a compile per batch
shape and per policy: the inference engine changes both all the time.

Only for frozen weights: the inference backend's copy of a policy, never a model being trained.
"""

from __future__ import annotations

import torch
from torch import nn


def prepacking_available(dtype: torch.dtype) -> bool:
    """Whether this torch build and CPU run oneDNN's packed linear in ``dtype``."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    if dtype == torch.float32:
        return True
    if dtype == torch.bfloat16:
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check and check())
    return False


class PackedLinear(nn.Module):
    """``nn.Linear``'s forward on a weight reordered once (same results up to summation order)."""

    def __init__(self, linear: nn.Linear, batch_hint: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight, batch_hint))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, prepacked"


def prepack_linears(model: nn.Module, batch_hint: int) -> int:
    """Replace every ``nn.Linear`` of a CPU model in eval mode by a :class:`PackedLinear`; returns how
    many were replaced (0 where the device or dtype has no packed kernel). A weight tied to an
    embedding (the LM head of SmolLM2) gets its own packed copy; the embedding keeps the original."""
    params = list(model.parameters())
    if not params or params[0].device.type != "cpu" or not prepacking_available(params[0].dtype):
        return 0
    if model.training:
        raise ValueError("prepack_linears is for inference: the model is in training mode")
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Linear
    ]
    with torch.no_grad():
        for parent, name, child in targets:
            setattr(parent, name, PackedLinear(child, batch_hint))
    return len(targets)
