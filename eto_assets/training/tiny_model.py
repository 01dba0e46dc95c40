"""Build the embedded default model: a small Llama-architecture causal LM and a byte-level BPE
tokenizer trained on the pipeline's own text, so everything runs offline on a CPU in minutes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from eto_assets.agent.chat_template import ASSISTANT_TAG, TRAINING_CHAT_TEMPLATE, USER_TAG
from eto_assets.config.profile import TinyModelConfig
from eto_assets.data.files import publish_dir, staging_dir

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", USER_TAG, ASSISTANT_TAG]


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    fast.chat_template = TRAINING_CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_model(texts: Iterable[str], out_dir: Path, spec: TinyModelConfig | None = None) -> Path:
    """Train the tokenizer on ``texts``, initialise the model with ``spec.seed``, save both."""
    spec = spec or TinyModelConfig()
    tokenizer = train_tokenizer(texts, spec.vocab_size)
    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    staging = staging_dir(out_dir)  # written whole, then swapped in (never half a model)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "tiny_model_spec.json").write_text(spec.model_dump_json(indent=2))
    return publish_dir(staging, out_dir)
