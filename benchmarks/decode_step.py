"""Our engine's decode step beside its limit: SmolLM2-135M-Instruct, one token for each of a batch
of real ScienceWorld episodes whose prompts are cached, on one core.

The step is what the engine does per generated token: the model's forward over the batch's new
tokens with the cached keys and values (``SessionDecoder._forward``) and the choice of the next
tokens. Its limit is the work the step cannot avoid at this machine's measured speeds: its
multiply-adds at the rate a large matrix product reaches here (same dtype, same thread), or its
weights read once at the bandwidth a large copy reaches, whichever takes longer. Between the two,
the step's own matrix products run alone (``F.linear`` on the layers' shapes, batch rows): what
the kernels cost at this batch size without the model's other work.

    python benchmarks/decode_step.py [--batch 8] [--threads 1] [--dtypes float32,bfloat16]

Prints, per dtype and batch, ``decode_step_ms``, ``decode_limit_ms`` and their ratio.
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

from eto_assets.agent.backends import TransformersBackend, set_torch_threads  # noqa: E402
from eto_assets.agent.decoding import _Row  # noqa: E402

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


def kernels_alone(config, batch: int, dtype: torch.dtype) -> float:
    """Seconds of the step's matrix products on their own, on random weights of the same shapes."""
    weights = [torch.randn(b, a, dtype=dtype) for a, b in linear_shapes(config)]
    xs = {a: torch.randn(batch, a, dtype=dtype) for a, _ in linear_shapes(config)}

    def once() -> float:
        t0 = time.perf_counter()
        for w in weights:
            F.linear(xs[w.shape[1]], w)
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
        backend = TransformersBackend(real_model(args.model), max_batch_size=max(batches), dtype=name)
        dtype, config = backend.model.dtype, backend.model.config
        peak = peak_flops(dtype)
        prompts = [backend._encode(c) for c in convs]
        print(f"{name}: peak {peak / 1e9:.1f} GFLOP/s (1024^3 product)")
        for batch in batches:
            step, context = measured_step(backend, prompts[:batch])
            flops, weights = step_work(config, batch, context)
            limit = max(flops / peak, weights * dtype.itemsize / speed)
            alone = kernels_alone(config, batch, dtype)
            rows.append((name, batch, context, step, alone, limit, flops))
        del backend
    print("\n| dtype | batch | context | step ms | ms/token | products alone ms | limit ms | step / limit |")
    print("|---|---|---|---|---|---|---|---|")
    for name, batch, context, step, alone, limit, _ in rows:
        print(
            f"| {name} | {batch} | {context} | {step * 1e3:.1f} | {step * 1e3 / batch:.2f} | "
            f"{alone * 1e3:.1f} | {limit * 1e3:.1f} | {step / limit:.1f}x |"
        )
    for name, batch, _, step, _, limit, _ in rows:
        tag = f"{name}_b{batch}"
        print(f"decode_step_ms_{tag}={step * 1e3:.1f} decode_limit_ms_{tag}={limit * 1e3:.1f}")


if __name__ == "__main__":
    main()
