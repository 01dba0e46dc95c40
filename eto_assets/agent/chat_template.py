"""Chat templates whose assistant turns are wrapped in ``{% generation %}`` markers.

TRL's ``assistant_only_loss`` and our DPO action mask both read those markers through
``apply_chat_template(..., return_assistant_tokens_mask=True)``. A model keeps its native chat
format: when its template lacks the markers, :func:`ensure_training_template` derives one that
renders every conversation identically and marks what the model writes in an assistant turn (the
content and the end token the format closes the turn with, e.g. ``<|im_end|>`` for ChatML, ``</s>``
for Llama-2). It tries, in order:

1. TRL's training templates (``trl.chat_template_utils.get_training_chat_template``), which cover
   the exact templates of Qwen, Llama-3, Gemma, Phi-3, SmolVLM and other families;
2. a rewrite of the ChatML per-message line ``'<|im_start|>' + role + '\\n' + content + '<|im_end|>'``
   (SmolLM2, Qwen-1.5/2, OpenHermes, ... );
3. a rewrite of an ``{% if message['role'] == 'assistant' %}{{ ... }}`` branch that prints the whole
   assistant turn (Llama-2 ``[INST]`` chat, Mistral-Instruct, ...).

Every candidate is verified (:func:`verify_training_template`) on sample conversations before it is
accepted; when none passes, :class:`UnsupportedChatTemplateError` says what to do. Only a tokenizer
with no template at all gets the pipeline's own plain format, :data:`TRAINING_CHAT_TEMPLATE` (the
tiny model's, whose role tags are plain text, so any tokenizer can encode it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

USER_TAG = "<|user|>"
ASSISTANT_TAG = "<|assistant|>"

TRAINING_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '" + ASSISTANT_TAG + "\\n' }}"
    "{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}"
    "{{ '" + USER_TAG + "\\n' + message['content'] + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + ASSISTANT_TAG + "\\n' }}{% endif %}"
)

HOW_TO_FIX = (
    "Give the model a chat template whose assistant turns are wrapped in "
    "{% generation %}...{% endgeneration %} (around the assistant content and the end-of-turn token, "
    "rendering exactly like the original): put it in the model folder's chat_template.jinja (or the "
    "'chat_template' entry of its tokenizer_config.json), or set tokenizer.chat_template before training. "
    "To train the model in the pipeline's plain format instead, write "
    "eto_assets.agent.chat_template.TRAINING_CHAT_TEMPLATE there (only sensible for a model that "
    "does not know its native format yet)."
)

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


class UnsupportedChatTemplateError(ValueError):
    """The model's chat template has no generation markers and none could be derived safely."""


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and _GENERATION_TAG.search(template) is not None


# --- verification -------------------------------------------------------------------------------

_SYSTEM = "You are an agent in a text world."
_USER = ("Your task is to find an animal.\nYou are in the kitchen.", "Observation: a door to the hallway.")
_ASSISTANT = ("Thought: look first.\nAction: look around", "Action: open door to hallway")


def sample_conversations() -> list[list[dict[str, str]]]:
    """Conversations every derived template must render like the original."""
    turns = [
        {"role": "user", "content": _USER[0]},
        {"role": "assistant", "content": _ASSISTANT[0]},
        {"role": "user", "content": _USER[1]},
        {"role": "assistant", "content": _ASSISTANT[1]},
    ]
    return [
        turns,
        [{"role": "system", "content": _SYSTEM}, *turns],
        turns[:2],
        turns[:3],
        [{"role": "system", "content": _SYSTEM}, *turns[:1]],
    ]


def _render(tokenizer, template: str, conversation, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        conversation, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _render_spans(tokenizer, template: str, conversation) -> tuple[str, list[tuple[int, int]]]:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, indices = render_jinja_template(
        conversations=[conversation],
        chat_template=template,
        return_assistant_tokens_mask=True,
        add_generation_prompt=False,
        **tokenizer.special_tokens_map,
    )
    return rendered[0], [tuple(span) for span in indices[0]]


def verify_training_template(tokenizer, original: str, derived: str, *, allow_header: bool = False) -> None:
    """Raise ``ValueError`` unless ``derived`` renders the sample conversations exactly like
    ``original`` (with and without the generation prompt) and marks, in each assistant turn, exactly
    what the model writes: from the end of the generation prompt through the turn's content and its
    end token (besides the content, only whitespace and special tokens).

    ``allow_header`` also accepts a span that starts earlier, inside the assistant turn's header (but
    after the previous message), as some of TRL's training templates mark the role header or an
    empty thinking block; the tokens there are the same in every answer."""
    from jinja2.exceptions import TemplateError

    special = {t for t in tokenizer.all_special_tokens if t}
    checked = 0
    for conversation in sample_conversations():
        renders = {}
        for add_generation_prompt in (False, True):
            try:
                expected = _render(tokenizer, original, conversation, add_generation_prompt)
            except TemplateError:
                expected = None  # the original rejects this conversation (e.g. no system role)
            try:
                got = _render(tokenizer, derived, conversation, add_generation_prompt)
            except TemplateError as exc:
                if expected is None:
                    continue
                raise ValueError(f"the derived template fails where the original renders: {exc}") from exc
            if got != expected:
                raise ValueError(
                    f"the derived template renders differently (add_generation_prompt="
                    f"{add_generation_prompt}):\noriginal: {expected!r}\nderived:  {got!r}"
                )
            renders[add_generation_prompt] = got
        if False not in renders:
            continue
        text, spans = _render_spans(tokenizer, derived, conversation)
        assistant_at = [i for i, m in enumerate(conversation) if m["role"] == "assistant"]
        if len(spans) != len(assistant_at):
            raise ValueError(
                f"the derived template marks {len(spans)} spans for {len(assistant_at)} assistant turns"
            )
        for (start, end), i in zip(spans, assistant_at, strict=True):
            _check_span(
                text,
                start,
                end,
                conversation,
                i,
                special,
                allow_header,
                _render(tokenizer, original, conversation[:i], True),
            )
            checked += 1
    if not checked:
        raise ValueError("no sample conversation with an assistant turn could be rendered")


def _check_span(text, start, end, conversation, i, special, allow_header, prompt) -> None:
    marked = text[start:end]
    content = conversation[i]["content"].strip()
    at = marked.find(content)
    if at < 0:
        raise ValueError(f"assistant turn {i}: the marked span {marked!r} lacks the turn's content")
    if not text.startswith(prompt):
        raise ValueError(f"assistant turn {i}: the text does not continue the generation prompt {prompt!r}")
    if allow_header:
        previous = conversation[i - 1]["content"].strip() if i else ""
        previous_end = text.rfind(previous, 0, len(prompt)) + len(previous) if previous else 0
        if start < previous_end:
            raise ValueError(f"assistant turn {i}: the marked span {marked!r} reaches into the previous turn")
    else:
        # the span starts where the generation prompt ends (up to whitespace) and the content follows
        gap = text[min(start, len(prompt)) : max(start, len(prompt))]
        if gap.strip() or marked[:at].strip():
            raise ValueError(
                f"assistant turn {i}: the marked span starts at {start}, not where the generation "
                f"prompt ends ({len(prompt)}): {marked!r}"
            )
    after = marked[at + len(content) :]
    rest = after
    for token in special:
        rest = rest.replace(token, " ")
    if rest.strip():
        raise ValueError(f"assistant turn {i}: the marked span {marked!r} holds more than the turn")
    if not any(token in after for token in special):
        raise ValueError(f"assistant turn {i}: the marked span {marked!r} lacks an end-of-turn token")


# --- candidate rewrites -------------------------------------------------------------------------

_NL = r"(?:\n|\\n)"  # a newline inside a Jinja string literal, written raw or escaped

_CHATML_LINE = re.compile(
    r"\{\{(?P<lstrip>-?)\s*"
    r"(?P<q1>['\"])<\|im_start\|>(?P=q1)\s*\+\s*"
    r"(?P<var>\w+)(?:\[(?P<q2>['\"])role(?P=q2)\]|\.role)\s*\+\s*"
    r"(?P<q3>['\"])(?P<nl0>" + _NL + r")(?P=q3)\s*\+\s*"
    r"(?P=var)(?:\[(?P<q4>['\"])content(?P=q4)\]|\.content)(?P<filters>(?:\s*\|\s*trim)?)\s*\+\s*"
    r"(?P<q5>['\"])<\|im_end\|>(?P<nl1>" + _NL + r")?(?P=q5)"
    r"(?:\s*\+\s*(?P<q6>['\"])(?P<nl2>" + _NL + r")(?P=q6))?"
    r"\s*(?P<rstrip>-?)\}\}"
)


def _chatml_rewrite(template: str) -> str | None:
    """Split ChatML's one-line-per-message output so the assistant's content and ``<|im_end|>``
    are marked."""

    def split(m: re.Match) -> str:
        var, nl = m["var"], m["nl0"]
        after = m["nl1"] or m["nl2"]
        content = f"{var}['content']{m['filters']}"
        original = "{{ " + m.group(0)[2 + len(m["lstrip"]) : -2 - len(m["rstrip"])].strip() + " }}"
        return (
            f"{{%{m['lstrip']} if {var}['role'] == 'assistant' %}}"
            f"{{{{ '<|im_start|>' + {var}['role'] + '{nl}' }}}}"
            f"{{% generation %}}{{{{ {content} + '<|im_end|>' }}}}{{% endgeneration %}}"
            + (f"{{{{ '{after}' }}}}" if after else "")
            + f"{{% else %}}{original}{{% endif {m['rstrip']}%}}"
        )

    rewritten, count = _CHATML_LINE.subn(split, template)
    return rewritten if count == 1 else None


_ASSISTANT_BRANCH = re.compile(
    r"(?P<head>\{%-?\s*(?:el)?if\s+(?P<var>\w+)(?:\[(?P<q1>['\"])role(?P=q1)\]|\.role)\s*==\s*"
    r"(?P<q2>['\"])assistant(?P=q2)\s*-?%\})"
    r"(?P<ws>\s*)"
    r"(?P<stmt>\{\{(?P<lstrip>-?)(?:(?!\}\}|\{%|\{\{).)*?(?P<rstrip>-?)\}\})"
    r"(?=\s*\{%)",
    re.S,
)


def _assistant_branch_rewrite(template: str) -> str | None:
    """Mark the single output statement of an ``if role == 'assistant'`` branch, as in Llama-2's
    ``{{ ' ' + content.strip() + ' ' + eos_token }}``."""

    def wrap(m: re.Match) -> str:
        return (
            f"{m['head']}{m['ws']}{{%{m['lstrip']} generation %}}{m['stmt']}"
            f"{{% endgeneration {m['rstrip']}%}}"
        )

    rewritten, count = _ASSISTANT_BRANCH.subn(wrap, template)
    return rewritten if count == 1 else None


def _trl_rewrite(tokenizer) -> str | None:
    from trl.chat_template_utils import get_training_chat_template

    try:
        return get_training_chat_template(processing_class=tokenizer)
    except (ValueError, TypeError, KeyError):
        return None


def _candidates(tokenizer, template: str) -> Sequence[tuple[str, bool, Callable[[], str | None]]]:
    """(name, whether its span may include the turn's header, maker), in order of preference."""
    return (
        ("TRL training template", True, lambda: _trl_rewrite(tokenizer)),
        ("ChatML message rewrite", False, lambda: _chatml_rewrite(template)),
        ("assistant-branch rewrite", False, lambda: _assistant_branch_rewrite(template)),
    )


def _template_text(tokenizer) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        if "default" not in template:
            names = sorted(template)
            raise UnsupportedChatTemplateError(
                f"the tokenizer has named chat templates {names} but no 'default' one. " + HOW_TO_FIX
            )
        template = template["default"]
    return template or None


def derive_training_template(tokenizer, template: str | None = None) -> str:
    """The tokenizer's own template (or ``template``) with generation markers, verified to render
    identically; the template itself when it already has markers."""
    template = template if template is not None else _template_text(tokenizer)
    if not template:
        raise UnsupportedChatTemplateError("the tokenizer has no chat template. " + HOW_TO_FIX)
    if has_generation_markers(template):
        return template
    rejected = []
    for name, allow_header, make in _candidates(tokenizer, template):
        candidate = make()
        if not has_generation_markers(candidate):
            rejected.append(f"{name}: not applicable")
            continue
        try:
            verify_training_template(tokenizer, template, candidate, allow_header=allow_header)
        except ValueError as exc:
            rejected.append(f"{name}: {exc}")
            continue
        return candidate
    raise UnsupportedChatTemplateError(
        "the model's chat template has no {% generation %} markers, and no verified rewrite of it "
        "marks the assistant turns ("
        + "; ".join(rejected)
        + "). "
        + HOW_TO_FIX
        + f"\nThe template:\n{template}"
    )


def ensure_training_template(tokenizer) -> bool:
    """Give the tokenizer a template that marks assistant tokens: its own when it has the markers,
    else one derived from it (:func:`derive_training_template`; raises
    :class:`UnsupportedChatTemplateError` when that is not possible), else, for a tokenizer with no
    template at all, :data:`TRAINING_CHAT_TEMPLATE`. Returns True when the template changed."""
    template = _template_text(tokenizer)
    if template is None:
        tokenizer.chat_template = TRAINING_CHAT_TEMPLATE
        return True
    if has_generation_markers(template):
        return False
    tokenizer.chat_template = derive_training_template(tokenizer, template)
    return True
