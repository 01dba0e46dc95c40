"""Inference backends behind one interface: a batch of chat conversations in, one answer each out.

``transformers`` runs anywhere (CPU included); ``vllm`` is the GPU path; ``openai`` talks to any
OpenAI-compatible endpoint (a ``vllm serve`` server or a hosted model). A conversation whose prompt
no longer fits the model's context gets ``None``: the rollout engine ends that episode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from eto_assets.agent.parsing import STOP_STRINGS, truncate_at_stop

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    seed: int = 0


class InferenceBackend(Protocol):
    def generate(self, conversations: list[Conversation], config: GenerationConfig) -> list[str | None]: ...

    def close(self) -> None: ...


class ModelPathError(ValueError):
    """The model setting does not point at a loadable Hugging Face model folder."""


def check_model_dir(path: str | Path, setting: str = "model path") -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ModelPathError(f"{setting}: {path} is not a directory holding a Hugging Face model")
    if not (path / "config.json").is_file():
        raise ModelPathError(
            f"{setting}: {path} has no config.json, so it is not a Hugging Face model folder"
        )
    return path


class TransformersBackend:
    """Batched ``generate`` with left padding, KV cache, stop strings and ``inference_mode``."""

    def __init__(
        self, model_path: str | Path, *, max_batch_size: int = 16, device: str | None = None
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from eto_assets.training.chat_template import ensure_training_template

        path = check_model_dir(model_path)
        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        ensure_training_template(self.tokenizer)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.max_batch_size = max_batch_size
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 4096))

    def _encode(self, conversation: Conversation) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, conversations: list[Conversation], config: GenerationConfig) -> list[str | None]:
        torch = self._torch
        encoded = [self._encode(c) for c in conversations]
        results: list[str | None] = [None] * len(conversations)
        fits = [i for i, ids in enumerate(encoded) if len(ids) + config.max_new_tokens <= self.max_context]
        for start in range(0, len(fits), self.max_batch_size):
            chunk = fits[start : start + self.max_batch_size]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            sampling = config.temperature > 0
            if sampling:
                torch.manual_seed(config.seed + start)
            with torch.inference_mode():
                out = self.model.generate(
                    **batch,
                    max_new_tokens=config.max_new_tokens,
                    do_sample=sampling,
                    temperature=config.temperature if sampling else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                    stop_strings=list(STOP_STRINGS),
                    tokenizer=self.tokenizer,
                )
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            for i, row in zip(chunk, new_tokens, strict=True):
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                results[i] = truncate_at_stop(text)
        return results

    def close(self) -> None:
        del self.model


class VLLMBackend:
    """Offline ``LLM.generate`` over the whole batch (GPU); loaded once per stage."""

    def __init__(
        self, model_path: str | Path, *, tensor_parallel_size: int = 1, max_model_len: int | None = None
    ):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise RuntimeError("backend 'vllm' needs the GPU extra: pip install '.[gpu]'") from exc
        from transformers import AutoTokenizer

        from eto_assets.training.chat_template import ensure_training_template

        path = check_model_dir(model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        ensure_training_template(self.tokenizer)
        self.llm = LLM(
            model=str(path),
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
        )
        self.max_context = self.llm.llm_engine.model_config.max_model_len

    def generate(self, conversations: list[Conversation], config: GenerationConfig) -> list[str | None]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts, index = [], []
        for i, conv in enumerate(conversations):
            text = self.tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) + config.max_new_tokens <= self.max_context:
                prompts.append(TokensPrompt(prompt_token_ids=ids))
                index.append(i)
        params = SamplingParams(
            temperature=config.temperature,
            max_tokens=config.max_new_tokens,
            stop=list(STOP_STRINGS),
            seed=config.seed if config.temperature > 0 else None,
        )
        results: list[str | None] = [None] * len(conversations)
        for i, out in zip(index, self.llm.generate(prompts, params, use_tqdm=False), strict=True):
            results[i] = truncate_at_stop(out.outputs[0].text)
        return results

    def close(self) -> None:
        del self.llm


class OpenAIBackend:
    """Concurrent chat-completion requests against an OpenAI-compatible endpoint."""

    def __init__(
        self, model: str, *, base_url: str | None = None, api_key: str | None = None, workers: int = 16
    ):
        from openai import OpenAI

        self.model = model
        self.client = OpenAI(
            base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
            api_key=api_key or os.environ.get("OPENAI_API_KEY", "EMPTY"),
        )
        self.workers = workers

    def _one(self, conversation: Conversation, config: GenerationConfig) -> str | None:
        response = self.client.chat.completions.create(
            model=self.model,
            messages=conversation,
            temperature=config.temperature,
            max_tokens=config.max_new_tokens,
            stop=list(STOP_STRINGS),
            seed=config.seed,
        )
        return truncate_at_stop(response.choices[0].message.content or "")

    def generate(self, conversations: list[Conversation], config: GenerationConfig) -> list[str | None]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda c: self._one(c, config), conversations))

    def close(self) -> None:
        self.client.close()


BACKENDS = ("transformers", "vllm", "openai")


def load_backend(kind: str, model: str | Path, **options) -> InferenceBackend:
    if kind == "transformers":
        return TransformersBackend(model, **options)
    if kind == "vllm":
        return VLLMBackend(model, **options)
    if kind == "openai":
        return OpenAIBackend(str(model), **options)
    raise ValueError(f"inference backend {kind!r} is not one of {BACKENDS}")
