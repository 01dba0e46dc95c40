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
    with pytest.raises(SettingError, match="ETO_TORCH_THREADS='0' is outside"):
        env.torch_threads({"ETO_TORCH_THREADS": "0"})
    with pytest.raises(SettingError, match="ETO_INFERENCE_DTYPE='half-ish'"):
        env.inference_dtype({"ETO_INFERENCE_DTYPE": "half-ish"})
    with pytest.raises(Exception, match="'int4' is not one of"):
        InferenceResource(dtype="int4")


# ------------------------------------------------------------------ the openai backend's settings


@pytest.fixture
def no_openai_env(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return monkeypatch


def test_openai_backend_reads_its_settings_through_the_table(no_openai_env):
    from eto_assets.agent.backends import OpenAIBackend

    backend = OpenAIBackend("m")  # nothing set: the table's defaults, never the client's own env lookup
    assert str(backend.client.base_url) == "https://api.openai.com/v1/" and backend.client.api_key == "EMPTY"
    no_openai_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    no_openai_env.setenv("OPENAI_API_KEY", "sk-from-env")
    backend = OpenAIBackend("m")
    assert str(backend.client.base_url) == "http://127.0.0.1:8000/v1/"
    assert backend.client.api_key == "sk-from-env"
    backend = OpenAIBackend("m", base_url="http://10.0.0.1:9/v1", api_key="sk-given")  # the caller's win
    assert str(backend.client.base_url) == "http://10.0.0.1:9/v1/" and backend.client.api_key == "sk-given"
    no_openai_env.setenv("OPENAI_BASE_URL", "")  # empty is unset, as for every setting
    assert str(OpenAIBackend("m").client.base_url) == "https://api.openai.com/v1/"


def test_a_bad_openai_key_is_named_but_never_shown(no_openai_env):
    from eto_assets.agent.backends import OpenAIBackend

    no_openai_env.setenv("OPENAI_API_KEY", "sk-secret-value\n")
    with pytest.raises(SettingError, match="OPENAI_API_KEY") as caught:
        OpenAIBackend("m")
    assert "sk-secret-value" not in str(caught.value)


def test_inference_resource_passes_the_openai_settings(no_openai_env):
    from eto_assets.config import settings as env

    resource = InferenceResource()
    assert resource.openai_base_url == env.openai_base_url() and resource.openai_api_key is None
    assert InferenceResource.model_fields["openai_api_key"].default is None  # no key in the launchpad

    local = "http://127.0.0.1:8000/v1"
    given = InferenceResource(backend="openai", openai_base_url=local, openai_api_key="sk-f")
    assert "sk-f" not in repr(given) and "sk-f" not in str(given)
    backend = given.open("checkpoint")
    assert backend.model == "checkpoint" and backend.client.api_key == "sk-f"
    assert str(backend.client.base_url) == "http://127.0.0.1:8000/v1/"

    no_openai_env.setenv("OPENAI_API_KEY", "sk-late")  # unset field: the variable, read when opened
    assert InferenceResource(backend="openai").open("checkpoint").client.api_key == "sk-late"


def test_openai_backend_sends_etos_stop_strings_and_cuts_what_comes_back(no_openai_env):
    """A real OpenAI client against a local chat-completions endpoint: the request carries ETO's
    stop list (ETO eval_agent/agents/openai_lm_agent.py:37, ``stop=self.stop_words`` from
    agents/base.py:14), and a server that ignores it still has its hallucinated task cut."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from eto_assets.agent.backends import OpenAIBackend

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server hook's name
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            message = {"role": "assistant", "content": "Action: look around\nTask: find a frog"}
            body = json.dumps(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "m",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend("m", base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="sk-x")
        got = backend.generate(
            [[{"role": "user", "content": "Task Description:\nYour task is x"}]], GenerationConfig(8)
        )
        backend.close()
    finally:
        server.shutdown()
        server.server_close()
    assert got == ["Action: look around"]
    assert seen[0]["stop"] == ["\nObservation:", "\nTask:", "\n---"]
