"""A plain chat template whose assistant turns are wrapped in ``{% generation %}`` markers.

TRL's ``assistant_only_loss`` and our DPO action mask both read those markers through
``apply_chat_template(..., return_assistant_tokens_mask=True)``. Real models whose own template
lacks the markers get this one too (its role tags are plain text, so any tokenizer can encode it).
"""

from __future__ import annotations

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


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and "{% generation %}" in template.replace("{%-", "{%").replace("-%}", "%}")


def ensure_training_template(tokenizer) -> bool:
    """Give the tokenizer a template that marks assistant tokens: TRL's patched version of the
    model's own template where TRL knows it, else :data:`TRAINING_CHAT_TEMPLATE`. Returns True
    when the template changed."""
    if has_generation_markers(getattr(tokenizer, "chat_template", None)):
        return False
    patched = None
    if getattr(tokenizer, "chat_template", None):
        from trl.chat_template_utils import get_training_chat_template

        try:
            patched = get_training_chat_template(processing_class=tokenizer)
        except (ValueError, TypeError, KeyError):
            patched = None
    tokenizer.chat_template = patched if has_generation_markers(patched) else TRAINING_CHAT_TEMPLATE
    return True
