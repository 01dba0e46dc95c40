"""The transformers backend's explicit dtype and torch thread count, and their settings."""

import pytest
import torch

from eto_assets.agent.backends import (
    GenerationConfig,
    TransformersBackend,
    resolve_dtype,
    set_torch_threads,
)
from eto_assets.config.settings import SettingError, default_torch_threads
from resources.inference import InferenceResource


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_dtype_is_explicit_and_auto_is_float32_on_cpu(tiny_model_dir):
    path, _ = tiny_model_dir
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    backend = TransformersBackend(path, dtype="bfloat16")
    assert backend.model.dtype == torch.bfloat16
    conversation = [{"role": "user", "content": "look around"}]
    answers = backend.generate([conversation], GenerationConfig(max_new_tokens=4))
    assert len(answers) == 1 and answers[0] is not None
    with pytest.raises(ValueError, match="'int4' is not one of"):
        TransformersBackend(path, dtype="int4")


def test_threads_are_set_for_the_process(tiny_model_dir, restore_threads):
    path, _ = tiny_model_dir
    TransformersBackend(path, threads=1)
    assert torch.get_num_threads() == 1
    set_torch_threads(None)  # leaves it alone
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="at least 1"):
        set_torch_threads(0)
    assert [default_torch_threads(c) for c in (1, 2, 3, 16)] == [1, 1, 1, 8]


def test_inference_settings():
    from eto_assets.config import settings as env

    resource = InferenceResource()
    assert resource.torch_threads == env.torch_threads() and resource.dtype == env.inference_dtype()
    assert env.torch_threads({}) == default_torch_threads() and env.inference_dtype({}) == "auto"
    assert env.torch_threads({"ETO_TORCH_THREADS": "3"}) == 3
    assert env.inference_dtype({"ETO_INFERENCE_DTYPE": "bfloat16"}) == "bfloat16"
    with pytest.raises(SettingError, match="ETO_TORCH_THREADS=0"):
        env.torch_threads({"ETO_TORCH_THREADS": "0"})
    with pytest.raises(SettingError, match="ETO_INFERENCE_DTYPE='half-ish'"):
        env.inference_dtype({"ETO_INFERENCE_DTYPE": "half-ish"})
    with pytest.raises(Exception, match="'int4' is not one of"):
        InferenceResource(dtype="int4")
