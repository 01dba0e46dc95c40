"""The decoder hands the KV cache to the model under the name the installed transformers uses:
``cache`` where ``forward`` takes it (``past_key_values`` is removed in 5.40), else the old names."""

import inspect

from eto_assets.agent.backends import GenerationConfig, TransformersBackend
from eto_assets.agent.decoding import cache_argument


class _New:
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, use_cache=None):
        pass


class _Old:
    def forward(self, input_ids=None, past_key_values=None, use_cache=None, cache_position=None, **kwargs):
        pass


def test_cache_keyword_follows_the_forward_signature():
    assert cache_argument(_New()) == ("cache", False)
    assert cache_argument(_Old()) == ("past_key_values", True)


def test_decoding_passes_the_cache_the_installed_model_asks_for(tiny_model_dir):
    path, _ = tiny_model_dir
    backend = TransformersBackend(path, max_batch_size=2)
    params = inspect.signature(backend.model.forward).parameters
    seen: list[set[str]] = []
    forward = backend.model.forward

    def spy(*args, **kwargs):
        seen.append(set(kwargs))
        return forward(*args, **kwargs)

    backend.model.forward = spy
    conversations = [[{"role": "user", "content": "look around"}], [{"role": "user", "content": "go east"}]]
    backend.generate(conversations, GenerationConfig(max_new_tokens=4), sessions=["a", "b"])
    assert seen
    if "cache" in params:  # transformers >= the rename: no deprecated keyword at all
        assert all(
            "cache" in kw and "past_key_values" not in kw and "cache_position" not in kw for kw in seen
        )
    else:
        assert all("past_key_values" in kw for kw in seen)
