"""A failure's root cause in one line: the innermost meaningful exception of the chain, named by its
type, with the file or service it concerns when the message does not say so already."""

from __future__ import annotations

import re
from pathlib import Path

# Exceptions that only wrap another one: their own message says nothing the cause does not.
WRAPPERS = {"DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError", "RetryError"}
# Local variables that name the file an exception concerns (transformers, safetensors, our readers).
PATH_LOCALS = (
    "path",
    "filename",
    "file",
    "checkpoint",
    "checkpoint_file",
    "resolved_archive_file",
    "pretrained_model_name_or_path",
    "model_path",
)
MAX_CHARS = 400


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first (explicit causes, else the implicit context)."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return chain


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text and exc.args:
        text = repr(exc.args[0])
    return re.sub(r"\s+", " ", text)


def _path_in_traceback(exc: BaseException) -> str | None:
    """The innermost frame's path-like local that exists on disk (the file a loader choked on)."""
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name in PATH_LOCALS:
            value = frame.f_locals.get(name)
            if isinstance(value, str | Path) and str(value) and len(str(value)) < 500:
                try:
                    if Path(value).exists():
                        return str(value)
                except OSError:
                    continue
    return None


def _hint(exc: BaseException, message: str) -> str | None:
    """What a few well-known low-level errors mean here."""
    kind = type(exc).__name__
    module = type(exc).__module__ or ""
    if module.startswith("py4j") or "Java server" in message or "JVM" in message:
        return "the ScienceWorld Java engine (JVM) died or cannot be reached"
    if "safetensors" in module or "deserializing header" in message or "HeaderTooLarge" in message:
        return "a checkpoint's safetensors file is truncated or corrupt"
    if "SchedulerType" in message:
        return "bad lr_scheduler_type in the profile's sft/dpo section"
    if kind in ("ConnectionError", "MaxRetryError", "NewConnectionError", "ConnectTimeout") or (
        "Max retries exceeded" in message or "Connection refused" in message
    ):
        return "a server (MLflow tracking server?) cannot be reached"
    return None


def root_cause(exc: BaseException) -> tuple[str, str]:
    """``(error_type, one_line)`` for ``exc``: the innermost exception of its chain with a message
    (skipping pure wrappers), ``Type: message``, with the file it concerns and a hint if known."""
    chain = [e for e in _chain(exc) if type(e).__name__ not in WRAPPERS] or [exc]
    meaningful = [e for e in chain if _message(e)] or chain
    cause = meaningful[-1]
    # A message that names the problem better than its own cause (ours: "profile X: ..."), keep it.
    from dagster import Failure

    for outer in meaningful:
        if isinstance(outer, Failure) and outer.description:
            cause = outer
            break
    if isinstance(cause, Failure):
        line = re.sub(r"\s+", " ", cause.description or "").strip()
        inner = meaningful[-1] if meaningful[-1] is not cause else None
        error_type = type(inner).__name__ if inner is not None else "Failure"
        return error_type, line[:MAX_CHARS]
    message = _message(cause)
    line = f"{type(cause).__name__}: {message}" if message else type(cause).__name__
    path = _path_in_traceback(cause)
    if path and path not in line:
        line += f" (in {path})"
    hint = _hint(cause, message)
    if hint:
        line = f"{hint}: {line}"
    if len(line) > MAX_CHARS:
        line = line[: MAX_CHARS - 3] + "..."
    return type(cause).__name__, line
