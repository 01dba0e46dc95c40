"""A failure's root cause in one line: the innermost meaningful exception of the chain, named by its
type, with the file or service it concerns when the message does not say so already."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable, Iterator
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
# A full disk, said outright: the errno, or the words sqlite and the OS use for it.
NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
NO_SPACE_WORDS = ("no space left on device", "database or disk is full", "disk quota exceeded")
# Write errors that do not say why: a full disk when the filesystem they wrote to is (nearly) full.
# torch.save's C++ stream (an optimizer state in a checkpoint), sqlite's journal, torch's zip writer.
WRITE_FAILURES = (
    "basic_ios::clear",
    "iostream error",
    "disk i/o error",
    "failed writing file",
    "file write failed",
)
NEARLY_FULL_BYTES = 1 << 20  # a filesystem with less than this free (or under 1% free) is full


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


def _frames_innermost_first(exc: BaseException) -> list:
    """The frames of ``exc``'s traceback, innermost first (where the failing call held its locals)."""
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames[::-1]


def _path_in_traceback(exc: BaseException) -> str | None:
    """The innermost frame's path-like local that exists on disk (the file a loader choked on)."""
    for frame in _frames_innermost_first(exc):
        for name in PATH_LOCALS:
            value = frame.f_locals.get(name)
            if isinstance(value, str | Path) and str(value) and len(str(value)) < 500:
                try:
                    if Path(value).exists():
                        return str(value)
                except OSError:
                    continue
    return None


def _frame_paths(exc: BaseException) -> Iterator[Path]:
    """Absolute paths (and sqlite store URIs) held by the locals of ``exc``'s frames, innermost first."""
    for frame in _frames_innermost_first(exc):
        for value in list(frame.f_locals.values()):
            if isinstance(value, Path) or (isinstance(value, str) and 1 < len(value) < 500):
                text = str(value).removeprefix("sqlite:///")
                if text.startswith("/") and "\n" not in text:
                    yield Path(text)


def _existing(path: Path) -> Path | None:
    """``path`` or its nearest existing folder (a file that failed to be written may be gone)."""
    try:
        while not path.exists():
            if path.parent == path:
                return None
            path = path.parent
    except OSError:
        return None
    return path


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path.parent != path:
        path = path.parent
    return path


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _full_filesystem(candidates: Iterable[Path]) -> tuple[Path, Path, str] | None:
    """The first candidate on a (nearly) full filesystem: (mount point, path, "N free of M")."""
    seen: set[Path] = set()
    for candidate in candidates:
        path = _existing(candidate)
        if path is None or path in seen:
            continue
        seen.add(path)
        try:
            stat = os.statvfs(path)
        except OSError:
            continue
        free, total = stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize
        if total and (free < NEARLY_FULL_BYTES or free < total / 100):
            return _mount_point(path), candidate, f"{_size(free)} free of {_size(total)}"
    return None


def no_space(exc: BaseException, paths: Iterable[Path] = ()) -> str | None:
    """``no space left on <mount point> (...)`` when ``exc`` (or its chain) failed for a full disk: said
    outright (ENOSPC, "database or disk is full"), or a bare write error ("basic_ios::clear: iostream
    error", sqlite's "disk I/O error") on a filesystem that is indeed nearly full. The filesystem is
    found from the paths in the failing frames (the file being written, the store, the home), then
    ``paths``. None when the disk is not the cause."""
    chain = _chain(exc)
    said = any(
        (isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS)
        or any(w in _message(e).lower() for w in NO_SPACE_WORDS)
        for e in chain
    )
    bare = any(any(w in _message(e).lower() for w in WRITE_FAILURES) for e in chain)
    if not (said or bare):
        return None
    named = [Path(e.filename) for e in chain if isinstance(e, OSError) and isinstance(e.filename, str)]
    candidates = [*named, *(p for e in chain for p in _frame_paths(e)), *map(Path, paths)]
    full = _full_filesystem(candidates)
    cause = next((e for e in reversed(chain) if _message(e)), exc)
    what = f"{type(cause).__name__}: {_message(cause)}"
    if full is not None:
        mount, path, space = full
        return f"no space left on {mount} ({space}; writing under {path}): {what}"
    if said:
        where = f" (writing {candidates[0]})" if candidates else ""
        return f"no space left on device{where}: {what}"
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


def root_cause(exc: BaseException, paths: Iterable[Path] = ()) -> tuple[str, str]:
    """``(error_type, one_line)`` for ``exc``: the innermost exception of its chain with a message
    (skipping pure wrappers), ``Type: message``, with the file it concerns and a hint if known. A full
    disk is said as such, naming the filesystem (``paths``: more places the failing code wrote to)."""
    full = no_space(exc, paths)
    if full is not None:
        inner = [e for e in _chain(exc) if _message(e)] or [exc]
        return type(inner[-1]).__name__, _clip(full)
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
    return type(cause).__name__, _clip(line)


def _clip(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 3] + "..."
