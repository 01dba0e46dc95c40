"""Inference backends behind one interface: a batch of chat conversations in, one answer each out.

``transformers`` runs anywhere (CPU included); ``vllm`` is the GPU path; ``openai`` talks to any
OpenAI-compatible endpoint (a ``vllm serve`` server or a hosted model). A conversation whose prompt
no longer fits the model's context gets ``None``. The backends that hold the model's tokenizer also
say how long a prompt is (``prompt_tokens``, ``max_context``), so the rollout engine can leave the
oldest rounds of an episode out of its prompt before asking (profile ``rollout.context_overflow``);
the ``openai`` backend cannot count, so the engine cuts after a ``None``.

Importing this module is cheap (torch, transformers, vllm and openai are imported where a backend
is made), so the CLI's preflight uses :data:`BACKENDS` and :func:`check_model_dir` from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from eto_assets.config import settings
from eto_assets.config.settings import DTYPES
from eto_assets.data.react import STOP_STRINGS, truncate_at_stop

Conversation = list[dict[str, str]]

BACKENDS = ("transformers", "vllm", "openai")


def encode_prompt(tokenizer, conversation: Conversation) -> list[int]:
    """The token ids a policy reads for ``conversation``: rendered with the generation prompt, then
    tokenized as text (the one encoding of the local backends and of RL's episode tokens)."""
    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    seed: int = 0


def seeds_or_default(seeds: Sequence[int] | None, config: GenerationConfig, n: int) -> list[int]:
    """The caller's per-conversation seeds, else ``config.seed + i`` for conversation ``i``."""
    return list(seeds) if seeds is not None else [config.seed + i for i in range(n)]


def fits(prompt_tokens: int, max_new_tokens: int, max_context: int) -> bool:
    """The one context rule: the prompt and the longest answer fit the model's context."""
    return prompt_tokens + max_new_tokens <= max_context


class InferenceBackend(Protocol):
    # Tokens the model takes, prompt and answer together; None where the backend cannot tell.
    max_context: int | None

    def prompt_tokens(self, conversation: Conversation) -> int | None:
        """Tokens of the prompt this backend sends for ``conversation`` (chat template and
        generation prompt included); None where it cannot count them (the server decides)."""

    def generate(
        self,
        conversations: list[Conversation],
        config: GenerationConfig,
        *,
        seeds: Sequence[int] | None = None,
        sessions: Sequence[str] | None = None,
    ) -> list[str | None]:
        """One answer per conversation (None when it no longer fits the context). ``seeds`` make
        sampling reproducible per conversation whatever the batch; ``sessions`` name the episode each
        conversation belongs to, so a backend may reuse work from that episode's earlier turns."""

    def end_session(self, session: str) -> None:
        """The episode is over: its reusable state may be freed."""

    def close(self) -> None: ...


class ModelPathError(ValueError):
    """The model setting does not point at a loadable Hugging Face model folder."""


class ModelDirMissing(ModelPathError):
    """The model setting names no folder at all (as opposed to a folder that is not a model), so a
    caller such as the preflight can say "does not exist"."""


def check_model_dir(path: str | Path, setting: str = "model path") -> Path:
    """``path`` (``~`` expanded) when it is a Hugging Face model folder, else :class:`ModelPathError`
    naming ``setting``. The one definition of a usable model folder: the preflight, the backends and
    training all ask this, so a folder the preflight accepts is one they load."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelDirMissing(f"{setting}: {path} is not a directory holding a Hugging Face model")
    if not (path / "config.json").is_file():
        raise ModelPathError(
            f"{setting}: {path} has no config.json, so it is not a Hugging Face model folder"
        )
    return path


def set_torch_threads(threads: int | None) -> None:
    """Torch's intra-op thread count for this process (``None``: leave torch's default, one per core).

    On a small machine torch's threads compete with the environments' processes (a stepping
    ScienceWorld JVM keeps over a core busy), so fewer threads can be faster (``ETO_TORCH_THREADS``)."""
    import torch

    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"torch thread count must be at least 1, got {threads}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (AVX512-BF16 or AMX)."""
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def resolve_dtype(dtype: str, device: str):
    """The torch dtype for ``dtype`` on ``device``; ``auto`` is bfloat16 on CUDA, float32 elsewhere."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"inference dtype {dtype!r} is not one of {DTYPES}")
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


class _TokenizerCounting:
    """Prompt length by the model's own tokenizer and chat template (transformers and vLLM)."""

    tokenizer: object
    max_context: int

    def _encode(self, conversation: Conversation) -> list[int]:
        return encode_prompt(self.tokenizer, conversation)

    def prompt_tokens(self, conversation: Conversation) -> int:
        return len(self._encode(conversation))

    def _load_tokenizer(self, model_path: str | Path) -> Path:
        """The checked model folder; its tokenizer loaded with the chat template training used."""
        from transformers import AutoTokenizer

        from eto_assets.agent.chat_template import ensure_training_template

        path = check_model_dir(model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        ensure_training_template(self.tokenizer)
        return path

    def _fitting(self, conversations: list[Conversation], config: GenerationConfig) -> dict[int, list[int]]:
        """The prompt ids of the conversations that fit the context, by their index (the others get
        ``None``)."""
        encoded = {i: self._encode(c) for i, c in enumerate(conversations)}
        return {
            i: ids for i, ids in encoded.items() if fits(len(ids), config.max_new_tokens, self.max_context)
        }


class TransformersBackend(_TokenizerCounting):
    """Batched decoding with left padding, KV cache, stop strings and ``inference_mode``.

    With ``reuse_kv`` (the default) each session's keys/values are kept between its turns and
    shared prompt prefixes are computed once (see :mod:`eto_assets.agent.decoding`); without it
    every call recomputes every prompt, as a plain ``generate`` per request does.

    ``dtype``: the weights' dtype (``auto``: bfloat16 on CUDA, float32 on CPU). ``threads``: torch's
    intra-op thread count, set for the whole process when the backend is created (``None``: torch's
    default). ``max_context``: tokens a prompt and its answer may take, at most the model's
    ``max_position_embeddings`` (``None``: that). ``prepack``: on CPU, reorder the linear layers'
    weights once for oneDNN (:mod:`eto_assets.agent.packed_linear`; same outputs, faster steps)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        max_batch_size: int = 16,
        device: str | None = None,
        reuse_kv: bool = True,
        kv_budget_bytes: int = 2 << 30,
        dtype: str = "auto",
        threads: int | None = None,
        max_context: int | None = None,
        prepack: bool = True,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from eto_assets.agent.chat_template import ensure_training_template
        from eto_assets.agent.decoding import SessionDecoder
        from eto_assets.agent.packed_linear import prepack_linears

        path = check_model_dir(model_path)
        set_torch_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = resolve_dtype(dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        ensure_training_template(self.tokenizer)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        self.max_batch_size = max_batch_size
        self.prepacked = prepack_linears(self.model, max_batch_size) if prepack else 0
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 4096))
        if max_context is not None:
            self.max_context = min(self.max_context, max_context)
        self.decoder = SessionDecoder(
            self.model, self.tokenizer, STOP_STRINGS, reuse=reuse_kv, budget_bytes=kv_budget_bytes
        )

    def generate(
        self,
        conversations: list[Conversation],
        config: GenerationConfig,
        *,
        seeds: Sequence[int] | None = None,
        sessions: Sequence[str] | None = None,
    ) -> list[str | None]:
        encoded = [self._encode(c) for c in conversations]
        seeds = seeds_or_default(seeds, config, len(encoded))
        results: list[str | None] = [None] * len(conversations)
        fitting = [
            i for i, ids in enumerate(encoded) if fits(len(ids), config.max_new_tokens, self.max_context)
        ]
        for start in range(0, len(fitting), self.max_batch_size):
            chunk = fitting[start : start + self.max_batch_size]
            new_tokens = self.decoder.generate(
                [encoded[i] for i in chunk],
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
                seeds=[seeds[i] for i in chunk],
                sessions=[sessions[i] for i in chunk] if sessions is not None else None,
            )
            for i, row in zip(chunk, new_tokens, strict=True):
                results[i] = truncate_at_stop(self.tokenizer.decode(row, skip_special_tokens=True))
        return results

    def end_session(self, session: str) -> None:
        self.decoder.end_session(session)

    def close(self) -> None:
        del self.decoder, self.model


class VLLMBackend(_TokenizerCounting):
    """Offline ``LLM.generate`` over the whole batch (GPU); loaded once per stage."""

    def __init__(
        self, model_path: str | Path, *, tensor_parallel_size: int = 1, max_model_len: int | None = None
    ):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise RuntimeError("backend 'vllm' needs the GPU extra: pip install '.[gpu]'") from exc
        path = self._load_tokenizer(model_path)
        self.llm = LLM(
            model=str(path),
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
        )
        self.max_context = self.llm.llm_engine.model_config.max_model_len

    def generate(
        self,
        conversations: list[Conversation],
        config: GenerationConfig,
        *,
        seeds: Sequence[int] | None = None,
        sessions: Sequence[str] | None = None,
    ) -> list[str | None]:
        """vLLM's prefix caching reuses earlier turns by itself, so ``sessions`` needs no handling."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        seeds = seeds_or_default(seeds, config, len(conversations))
        fitting = self._fitting(conversations, config)
        index = list(fitting)
        prompts = [TokensPrompt(prompt_token_ids=fitting[i]) for i in index]
        params = [
            SamplingParams(
                temperature=config.temperature,
                max_tokens=config.max_new_tokens,
                stop=list(STOP_STRINGS),
                seed=seeds[i] if config.temperature > 0 else None,
            )
            for i in index
        ]
        results: list[str | None] = [None] * len(conversations)
        for i, out in zip(index, self.llm.generate(prompts, params, use_tqdm=False), strict=True):
            results[i] = truncate_at_stop(out.outputs[0].text)
        return results

    def end_session(self, session: str) -> None:
        pass

    def close(self) -> None:
        del self.llm


class OpenAIBackend:
    """Concurrent chat-completion requests against an OpenAI-compatible endpoint.

    ``base_url`` and ``api_key`` come from the caller (the inference resource); when not given, from
    the settings table (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``). The client always gets concrete
    values, so it never reads the environment itself. The key is never printed or logged.

    It has no tokenizer, so it cannot count a prompt: a request the server refuses for its context
    length (OpenAI's ``context_length_exceeded``, vLLM's "maximum context length") gets ``None``."""

    max_context = None

    def __init__(
        self, model: str, *, base_url: str | None = None, api_key: str | None = None, workers: int = 16
    ):
        from openai import OpenAI

        self.model = model
        self.client = OpenAI(
            base_url=base_url or settings.openai_base_url(),
            api_key=api_key or settings.openai_api_key(),
        )
        self.workers = workers

    def prompt_tokens(self, conversation: Conversation) -> None:
        return None

    def _one(self, conversation: Conversation, config: GenerationConfig, seed: int) -> str | None:
        from openai import BadRequestError

        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=conversation,
                temperature=config.temperature,
                max_tokens=config.max_new_tokens,
                stop=list(STOP_STRINGS),
                seed=seed,
            )
        except BadRequestError as exc:
            if exc.code == "context_length_exceeded" or "maximum context length" in str(exc):
                return None
            raise
        return truncate_at_stop(response.choices[0].message.content or "")

    def generate(
        self,
        conversations: list[Conversation],
        config: GenerationConfig,
        *,
        seeds: Sequence[int] | None = None,
        sessions: Sequence[str] | None = None,
    ) -> list[str | None]:
        from concurrent.futures import ThreadPoolExecutor

        seeds = seeds_or_default(seeds, config, len(conversations))
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda c, s: self._one(c, config, s), conversations, seeds))

    def end_session(self, session: str) -> None:
        pass

    def close(self) -> None:
        self.client.close()


def load_backend(kind: str, model: str | Path, **options) -> InferenceBackend:
    if kind == "transformers":
        return TransformersBackend(model, **options)
    if kind == "vllm":
        return VLLMBackend(model, **options)
    if kind == "openai":
        return OpenAIBackend(str(model), **options)
    raise ValueError(f"inference backend {kind!r} is not one of {BACKENDS}")
