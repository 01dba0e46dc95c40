"""Our engine's decode step beside its limit: SmolLM2-135M-Instruct, one token for each of a batch
of real ScienceWorld episodes whose prompts are cached, on one core.

The step is what the engine does per generated token: the model's forward over the batch's new
tokens with the cached keys and values (``SessionDecoder._forward``) and the choice of the next
tokens. Its limit is the work the step cannot avoid at this machine's measured speeds: its
multiply-adds at the rate a large matrix product reaches here (same dtype, same thread), or its
weights read once at the bandwidth a large copy reaches, whichever takes longer. Between the two,
the step's own matrix products run alone (on the layers' shapes, batch rows): what the kernels cost
at this batch size without the model's other work, and its attention alone (one query per row over
the cached keys and values of every layer).

Each dtype runs twice, side by side: the plain model (``F.linear`` reorders every weight for oneDNN
on each call) and the backend's default, its linear layers prepacked once
(:mod:`eto_assets.agent.packed_linear`).

    python benchmarks/decode_step.py [--batch 8] [--threads 1] [--dtypes float32,bfloat16]

Prints, per dtype, variant and batch, ``decode_step_ms``, ``decode_limit_ms`` and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eto_assets.config.settings import offline_environment  # noqa: E402

if __name__ == "__main__":  # the entry point, before the imports below load the Hugging Face libraries
    offline_environment()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _real_model_setup import real_model, sciworld_prompts  # noqa: E402
from torch import nn  # noqa: E402

from eto_assets.agent.backends import TransformersBackend, set_torch_threads  # noqa: E402
from eto_assets.agent.decoding import _Row  # noqa: E402
from eto_assets.agent.packed_linear import PackedLinear, prepacking_available  # noqa: E402

STEPS = 24


def best_of(seconds_of, repeats: int = 5) -> float:
    return min(seconds_of() for _ in range(repeats))


def peak_flops(dtype: torch.dtype) -> float:
    """Multiply-adds x2 per second of a large square product (the core's compute ceiling here)."""
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    torch.mm(a, b)

    def once() -> float:
        t0 = time.perf_counter()
        torch.mm(a, b)
        return time.perf_counter() - t0

    return 2 * 1024**3 / best_of(once)


def bandwidth() -> float:
    """Bytes per second read (and written) by a copy much larger than the caches."""
    src = torch.empty(256 << 20, dtype=torch.uint8)
    dst = torch.empty_like(src)

    def once() -> float:
        t0 = time.perf_counter()
        dst.copy_(src)
        return time.perf_counter() - t0

    return 2 * src.numel() / best_of(once, 3)


def linear_shapes(config) -> list[tuple[int, int]]:
    """(in, out) of every matrix product of one token through the model, the LM head included."""
    h, i = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    layer = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]
    return layer * config.num_hidden_layers + [(h, config.vocab_size)]


def step_work(config, batch: int, context: int) -> tuple[float, float]:
    """(FLOPs, weight bytes per element) of one decode step: the products, and attention over
    ``context`` cached positions (scores and weighted sum)."""
    macs = sum(a * b for a, b in linear_shapes(config)) * batch
    macs += 2 * config.num_hidden_layers * context * config.hidden_size * batch
    return 2.0 * macs, sum(a * b for a, b in linear_shapes(config))


def kernels_alone(config, batch: int, dtype: torch.dtype, packed: bool) -> float:
    """Seconds of the step's matrix products on their own, on random weights of the same shapes."""
    layers = [nn.Linear(a, b, bias=False, dtype=dtype).eval() for a, b in linear_shapes(config)]
    if packed:
        layers = [PackedLinear(layer, batch) for layer in layers]
    xs = {a: torch.randn(batch, a, dtype=dtype) for a, _ in linear_shapes(config)}

    @torch.inference_mode()
    def once() -> float:
        t0 = time.perf_counter()
        for layer, (a, _) in zip(layers, linear_shapes(config), strict=True):
            layer(xs[a])
        return time.perf_counter() - t0

    once()
    return best_of(once)


def attention_alone(config, batch: int, context: int, dtype: torch.dtype) -> float:
    """Seconds of the step's attention on its own: one query per row (heads grouped as the model
    does) over ``context`` cached keys and values per layer, each layer's cache its own memory as in
    the model (so it is read from memory, not from a warm cache)."""
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    dim = config.hidden_size // heads
    q = torch.randn(batch, kv_heads, heads // kv_heads, dim, dtype=dtype)
    shape = (batch, kv_heads, context, dim)
    layers = range(config.num_hidden_layers)
    caches = [(torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)) for _ in layers]
    mask = torch.ones(batch, 1, 1, context, dtype=torch.bool)

    def once() -> float:
        t0 = time.perf_counter()
        for k, v in caches:
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=dim**-0.5)
        return time.perf_counter() - t0

    once()
    return best_of(once)


@torch.inference_mode()
def measured_step(backend: TransformersBackend, prompts: list[list[int]]) -> tuple[float, int]:
    """Seconds per decode step of our engine with the prompts cached, and the context length."""
    decoder = backend.decoder
    rows = [_Row(torch.tensor(p, dtype=torch.long)) for p in prompts]
    cache, mask, logits = decoder._prefill(rows, reserve=STEPS + 4)
    positions = mask.sum(dim=1)
    times = []
    for _ in range(STEPS):
        t0 = time.perf_counter()
        tokens = decoder._choose(logits, 0.0, None)
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        logits = decoder._forward(
            cache,
            torch.tensor([mask.shape[1] - 1]),
            input_ids=tokens.view(-1, 1),
            attention_mask=mask,
            position_ids=positions.view(-1, 1),
        ).logits[:, -1]
        positions = positions + 1
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], int(mask.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", help="a model folder (default: the converted SmolLM2)")
    parser.add_argument("--batch", default="8", help="comma list of batch sizes (default 8)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()

    set_torch_threads(args.threads)
    batches = [int(b) for b in args.batch.split(",")]
    convs, _, env = sciworld_prompts(max(batches), turn=2)
    env.close()
    speed = bandwidth()
    print(f"torch threads {args.threads}; copy bandwidth {speed / 1e9:.1f} GB/s")
    rows = []
    for name in args.dtypes.split(","):
        peak = peak_flops(getattr(torch, name))
        print(f"{name}: peak {peak / 1e9:.1f} GFLOP/s (1024^3 product)")
        for packed in (False, True) if prepacking_available(getattr(torch, name)) else (False,):
            backend = TransformersBackend(
                real_model(args.model), max_batch_size=max(batches), dtype=name, prepack=packed
            )
            dtype, config = backend.model.dtype, backend.model.config
            prompts = [backend._encode(c) for c in convs]
            variant = "prepacked" if packed else "plain"
            for batch in batches:
                step, context = measured_step(backend, prompts[:batch])
                flops, weights = step_work(config, batch, context)
                limit = max(flops / peak, weights * dtype.itemsize / speed)
                alone = kernels_alone(config, batch, dtype, packed)
                attention = attention_alone(config, batch, context, dtype)
                rows.append((name, variant, batch, context, step, alone, attention, limit))
            del backend
    print(
        "\n| dtype | linear layers | batch | context | step ms | ms/token | products alone ms "
        "| attention alone ms | limit ms | step / limit |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, variant, batch, context, step, alone, attention, limit in rows:
        print(
            f"| {name} | {variant} | {batch} | {context} | {step * 1e3:.1f} | {step * 1e3 / batch:.2f} | "
            f"{alone * 1e3:.1f} | {attention * 1e3:.1f} | {limit * 1e3:.1f} | {step / limit:.1f}x |"
        )
    for name, variant, batch, _, step, _, _, limit in rows:
        tag = f"{name}_{variant}_b{batch}"
        print(f"decode_step_ms_{tag}={step * 1e3:.1f} decode_limit_ms_{tag}={limit * 1e3:.1f}")


if __name__ == "__main__":
    main()
