from transformers import AutoTokenizer

from eto_assets.agent.chat_template import TRAINING_CHAT_TEMPLATE, ensure_training_template


def test_tokenizer_roundtrip_and_assistant_mask(tiny_model_dir):
    path, _ = tiny_model_dir
    tok = AutoTokenizer.from_pretrained(path)
    text = "Action: open door to kitchen\nObservation: The door is now open."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    messages = [
        {"role": "user", "content": "Your task is x"},
        {"role": "assistant", "content": "Action: look around"},
        {"role": "user", "content": "Observation: a room"},
        {"role": "assistant", "content": "Action: wait"},
    ]
    enc = tok.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    kept = tok.decode([i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m])
    assert kept == "Action: look around</s>Action: wait</s>"


def test_template_installed_when_missing(tiny_model_dir):
    path, _ = tiny_model_dir
    tok = AutoTokenizer.from_pretrained(path)
    assert ensure_training_template(tok) is False
    tok.chat_template = None
    assert ensure_training_template(tok) is True
    assert tok.chat_template == TRAINING_CHAT_TEMPLATE
