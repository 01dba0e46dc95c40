"""Batched decoding for the transformers backend that reuses each session's KV cache across turns.

An agent's prompt at step t is its prompt at step t-1 plus its answer and the new observation, so a
plain ``generate`` per request recomputes almost the whole prompt every step. :class:`SessionDecoder`
keeps the keys/values of every session's tokens and, on the next turn, feeds only the tokens past the
longest prefix it already holds: the session's own history, or any other held prefix (sessions of
the same task type share the 1-shot preamble). Held tokens are compared token by token, so a prompt
that no longer extends what its session holds (an overflowing episode whose oldest rounds were left
out) reuses only the prefix they share and recomputes the rest. Prompts of one batch that share a
long prefix nobody holds yet get it computed once.

Rows of a batch have different cached and new lengths, so each row is laid out as
``[pad][cached][pad][new]``: pads are masked, position ids count real tokens only, and a row leaves
the batch as soon as it stops (end of turn, a stop string, or ``max_new_tokens``).
"""

from __future__ import annotations

import inspect
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of shape [heads, tokens, dim]


@dataclass
class _Held:
    ids: torch.Tensor  # 1-D token ids whose keys/values are held
    kv: KV

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() * 2 for k, _ in self.kv)


@dataclass
class _Row:
    ids: torch.Tensor  # the full prompt
    source: _Held | None = None
    cached: int = 0  # leading tokens of ``ids`` whose keys/values come from ``source``


class _BufferedLayer(DynamicLayer):
    """A cache layer with room to grow: a decode step writes one position instead of copying the
    whole cache as ``DynamicLayer``'s ``torch.cat`` does."""

    def __init__(self, reserve: int) -> None:
        super().__init__()
        self.reserve = reserve
        self._len = 0
        self._k = self._v = torch.empty(0)

    def preload(self, rows: list[tuple[int, torch.Tensor, torch.Tensor]], batch: int, width: int) -> None:
        """Right-align each ``(row, keys, values)`` in the first ``width`` positions (the rest is masked)."""
        _, k0, v0 = rows[0]
        self.dtype, self.device, self.is_initialized = k0.dtype, k0.device, True
        self._k = k0.new_zeros((batch, k0.shape[0], width + self.reserve, k0.shape[2]))
        self._v = v0.new_zeros((batch, v0.shape[0], width + self.reserve, v0.shape[2]))
        for b, k, v in rows:
            self._k[b, :, width - k.shape[1] : width] = k
            self._v[b, :, width - v.shape[1] : width] = v
        self._set_len(width)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
        n = key_states.shape[-2]
        if self._k.dim() != 4 or self._len + n > self._k.shape[-2]:
            self._grow(self._len + n + self.reserve, key_states, value_states)
        self._k[:, :, self._len : self._len + n] = key_states
        self._v[:, :, self._len : self._len + n] = value_states
        self._set_len(self._len + n)
        return self.keys, self.values

    def _grow(self, capacity: int, like_k: torch.Tensor, like_v: torch.Tensor) -> None:
        b, h, _, d = like_k.shape
        k, v = like_k.new_zeros((b, h, capacity, d)), like_v.new_zeros((b, h, capacity, like_v.shape[-1]))
        if self._len:
            k[:, :, : self._len], v[:, :, : self._len] = self.keys, self.values
        self._k, self._v = k, v

    def _set_len(self, n: int) -> None:
        self._len = n
        self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self._set_len(self._len)


def cache_argument(model) -> tuple[str, bool]:
    """How this model's ``forward`` takes the KV cache: ``(keyword, takes_cache_position)``.

    transformers renamed ``past_key_values`` to ``cache`` (and dropped ``cache_position``) during 5.x,
    and removes the old name in 5.40. A forward that names neither (a wrapper taking ``**kwargs``)
    follows the installed library: its output classes carry a ``cache`` field once it uses the new name."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}
    if "cache" in params:
        return "cache", "cache_position" in params
    if "past_key_values" in params:
        return "past_key_values", "cache_position" in params
    from transformers.modeling_outputs import CausalLMOutputWithPast

    new = "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
    return ("cache", False) if new else ("past_key_values", True)


def full_attention_only(config) -> bool:
    """Whether every layer attends to the whole context (no sliding window, no recurrent layers),
    which cross-turn reuse of right-aligned keys/values assumes."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    sliding = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    return set(layer_types) == {"full_attention"} and not sliding


def common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    diff = (a[:n] != b[:n]).nonzero()
    return int(diff[0]) if len(diff) else n


class KVStore:
    """Held keys/values by session, least recently used evicted past ``budget_bytes``."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key: str) -> _Held | None:
        held = self._held.get(key)
        if held is not None:
            self._held.move_to_end(key)
        return held

    def put(self, key: str, held: _Held) -> None:
        self.drop(key)
        self._held[key] = held
        self._bytes += held.nbytes
        while self._bytes > self.budget_bytes and len(self._held) > 1:
            self.drop(next(iter(self._held)))

    def drop(self, key: str) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            self._bytes -= held.nbytes

    def longest_prefix(self, ids: torch.Tensor) -> tuple[_Held | None, int]:
        best, best_len = None, 0
        for held in self._held.values():
            n = common_prefix(held.ids, ids)
            if n > best_len:
                best, best_len = held, n
        return best, best_len


class SessionDecoder:
    """Greedy or sampled decoding of a batch of token prompts with cross-turn KV reuse."""

    def __init__(
        self,
        model,
        tokenizer,
        stop_strings: Sequence[str],
        *,
        reuse: bool = True,
        budget_bytes: int = 2 << 30,
        min_shared_prefix: int = 32,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.stop_strings = tuple(stop_strings)
        self.buffered = full_attention_only(model.config)  # else the model's own cache layers
        self.reuse = reuse and self.buffered
        self.store = KVStore(budget_bytes)
        self.num_layers = model.config.get_text_config().num_hidden_layers
        self.min_shared_prefix = min_shared_prefix
        self.device = next(model.parameters()).device
        self._cache_kw, self._cache_position = cache_argument(model)
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in (*eos, tokenizer.eos_token_id) if i is not None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.fed_tokens = 0  # prompt tokens run through the model (for benchmarks and tests)
        self.generated_tokens = 0  # tokens returned (for benchmarks)

    def end_session(self, key: str) -> None:
        self.store.drop(key)

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[list[int]],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seeds: Sequence[int] | None = None,
        sessions: Sequence[str | None] | None = None,
    ) -> list[list[int]]:
        """New token ids per prompt (end-of-turn token excluded)."""
        sessions = sessions if sessions is not None else [None] * len(prompts)
        rows = [_Row(torch.tensor(p, dtype=torch.long)) for p in prompts]
        if self.reuse:
            self._find_sources(rows, sessions)
        cache, mask, logits = self._prefill(rows, reserve=max_new_tokens)
        generators = None
        if temperature > 0:
            seeds = seeds if seeds is not None else range(len(rows))
            generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        out: list[list[int]] = [[] for _ in rows]
        alive = list(range(len(rows)))  # batch position -> row index
        positions = mask.sum(dim=1)  # next position id of each batch row
        while True:
            tokens = self._choose(logits, temperature, [generators[r] for r in alive] if generators else None)
            keep = []
            for b, r in enumerate(alive):
                token = int(tokens[b])
                if token in self.eos_ids:
                    done = True
                else:
                    out[r].append(token)
                    done = len(out[r]) >= max_new_tokens or self._hit_stop(out[r])
                if done:
                    self._remember(sessions[r], rows[r], out[r], cache, mask, b)
                else:
                    keep.append(b)
            if not keep:
                self.generated_tokens += sum(len(o) for o in out)
                return out
            if len(keep) < len(alive):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, positions, tokens = mask[index], positions[index], tokens[index]
                alive = [alive[b] for b in keep]
            mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
            logits = self._forward(
                cache,
                torch.tensor([mask.shape[1] - 1], device=self.device),
                input_ids=tokens.view(-1, 1),
                attention_mask=mask,
                position_ids=positions.view(-1, 1),
            ).logits[:, -1]
            positions = positions + 1

    def _find_sources(self, rows: list[_Row], sessions: Sequence[str | None]) -> None:
        def attach(row: _Row, held: _Held | None, n: int) -> None:
            n = min(n, len(row.ids) - 1)  # at least one token must be fed to get logits
            if held is not None and n > row.cached:
                row.source, row.cached = held, n

        for row, key in zip(rows, sessions, strict=True):
            own = self.store.get(key) if key is not None else None
            if own is not None:
                attach(row, own, common_prefix(own.ids, row.ids))
            if row.cached < self.min_shared_prefix:
                attach(row, *self.store.longest_prefix(row.ids))
        self._share_prefixes([r for r in rows if r.cached < self.min_shared_prefix])

    def _share_prefixes(self, rows: list[_Row]) -> None:
        """Compute once, and hold, the long prefix that several uncached prompts share."""
        groups: dict[tuple[int, ...], list[_Row]] = {}
        for row in rows:
            if len(row.ids) > self.min_shared_prefix:
                groups.setdefault(tuple(row.ids[: self.min_shared_prefix].tolist()), []).append(row)
        prefixes = []
        for members in groups.values():
            if len(members) < 2:
                continue
            n = min(common_prefix(members[0].ids, m.ids) for m in members[1:])
            n = min(n, *(len(m.ids) - 1 for m in members))
            prefixes.append((members, _Row(members[0].ids[:n])))
        for members, prefix in prefixes:  # one at a time: unpadded, so attention takes its fast causal path
            cache, mask, _ = self._prefill([prefix], reserve=0)
            held = _Held(prefix.ids, self._row_kv(cache, mask, 0, len(prefix.ids)))
            self.store.put(f"prefix:{zlib.crc32(prefix.ids.numpy().tobytes())}", held)
            for m in members:
                m.source, m.cached = held, len(prefix.ids)

    def _prefill(self, rows: list[_Row], reserve: int) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """One forward over every row's uncached tokens; returns the batch cache, mask and last logits."""
        width_cached = max(r.cached for r in rows)
        width_new = max(len(r.ids) - r.cached for r in rows)
        batch = len(rows)
        input_ids = torch.full((batch, width_new), self.pad_id, dtype=torch.long)
        position_ids = torch.zeros((batch, width_new), dtype=torch.long)
        mask = torch.zeros((batch, width_cached + width_new), dtype=torch.long)
        for b, row in enumerate(rows):
            new = row.ids[row.cached :]
            input_ids[b, width_new - len(new) :] = new
            position_ids[b, width_new - len(new) :] = torch.arange(row.cached, len(row.ids))
            mask[b, width_cached - row.cached : width_cached] = 1
            mask[b, width_cached + width_new - len(new) :] = 1
            self.fed_tokens += len(new)
        cache = DynamicCache()
        if self.buffered:
            cache.layers = [_BufferedLayer(width_new + reserve) for _ in range(self.num_layers)]
            if width_cached:
                for layer, layer_kv in zip(cache.layers, self._cached_rows(rows), strict=True):
                    layer.preload(layer_kv, batch, width_cached)
        out = self._forward(
            cache,
            torch.arange(width_cached, width_cached + width_new, device=self.device),
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=position_ids.to(self.device),
            logits_to_keep=1,
        )
        return cache, mask.to(self.device), out.logits[:, -1]  # the model filled ``cache`` in place

    def _forward(self, cache: DynamicCache, cache_position: torch.Tensor, **inputs):
        """The model's forward with the cache under the keyword the installed transformers expects."""
        inputs[self._cache_kw] = cache
        if self._cache_position:
            inputs["cache_position"] = cache_position
        return self.model(**inputs, use_cache=True)

    def _cached_rows(self, rows: list[_Row]) -> list[list[tuple[int, torch.Tensor, torch.Tensor]]]:
        """Per layer, the held keys/values of every row that has some: ``(row, keys, values)``."""
        per_layer: list[list[tuple[int, torch.Tensor, torch.Tensor]]] = [[] for _ in range(self.num_layers)]
        for b, row in enumerate(rows):
            if row.cached:
                for layer, (k, v) in enumerate(row.source.kv):
                    per_layer[layer].append((b, k[:, : row.cached], v[:, : row.cached]))
        return per_layer

    def _row_kv(self, cache: DynamicCache, mask: torch.Tensor, b: int, length: int) -> KV:
        """The compact keys/values of batch row ``b``'s first ``length`` real tokens."""
        index = mask[b, : cache.get_seq_length()].nonzero().squeeze(1)[:length]
        return [(lay.keys[b][:, index], lay.values[b][:, index]) for lay in cache.layers]

    def _remember(
        self, key: str | None, row: _Row, new: list[int], cache: DynamicCache, mask: torch.Tensor, b: int
    ) -> None:
        if not self.reuse or key is None:
            return
        fed = int(mask[b].sum()) - len(row.ids)  # generated tokens already run through the model
        ids = torch.cat([row.ids, torch.tensor(new[:fed], dtype=torch.long)])
        self.store.put(key, _Held(ids, self._row_kv(cache, mask, b, len(ids))))

    def _hit_stop(self, new: list[int]) -> bool:
        tail = self.tokenizer.decode(new[-8:], skip_special_tokens=True)
        if not any(s[-1] in tail for s in self.stop_strings):
            return False
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return any(s in text for s in self.stop_strings)

    @staticmethod
    def _choose(logits: torch.Tensor, temperature: float, generators) -> torch.Tensor:
        if generators is None:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        picks = [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators, strict=True)]
        return torch.cat(picks)
