"""Checks that take seconds and save hours: run by the CLI before it launches anything and by the first
asset of the graph before any heavy work. Each problem is one line naming the setting at fault.

The backend list and the model-folder check are the backends' own (``eto_assets.agent.backends``
imports torch only where a backend is made), so the preflight cannot accept what the run refuses.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from eto_assets.agent.backends import BACKENDS, ModelDirMissing, ModelPathError, check_model_dir

TIMEOUT_S = 3.0


def check_backend(backend: str) -> str | None:
    if backend not in BACKENDS:
        return f"unknown inference backend {backend!r} (ETO_BACKEND / --backend); known: {list(BACKENDS)}"
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


def check_home_writable_without_creating(home: Path) -> str | None:
    """Like :func:`check_home`, but creates nothing: the nearest existing parent must be writable."""
    probe = home
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"ETO_HOME {str(home)!r} is not writable: {str(probe)!r} is a file"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"ETO_HOME {str(home)!r} is not writable: no write permission on {str(probe)!r}"
    return None


def check_tracking_uri(uri: str | None, timeout: float = TIMEOUT_S) -> str | None:
    """An HTTP tracking server answers within ``timeout`` seconds; a sqlite store's folder exists."""
    if not uri:
        return None
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
        for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
            try:
                with urllib.request.urlopen(base + path, timeout=timeout) as response:
                    if response.status < 500:
                        return None
            except urllib.error.HTTPError as exc:
                if exc.code < 500 and path != "/health":
                    return None  # it answers (an auth error is not "unreachable")
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                return f"MLflow tracking server {uri} is unreachable (MLFLOW_TRACKING_URI): {reason}"
        return f"MLflow tracking server {uri} does not answer correctly (MLFLOW_TRACKING_URI): {last}"
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        folder = db.parent
        if folder.exists() and not os.access(folder, os.W_OK):
            return f"MLflow store {uri} is not writable (MLFLOW_TRACKING_URI)"
    return None


def preflight(
    *,
    home: Path,
    backend: str,
    base_model: str,
    tracking_uri: str | None,
    create_home: bool = True,
) -> list[str]:
    """Every problem found, one line each (empty: the run can start)."""
    problems = [
        check_backend(backend),
        check_base_model(base_model),
        check_home(home) if create_home else check_home_writable_without_creating(home),
        check_tracking_uri(tracking_uri),
    ]
    return [p for p in problems if p]
