"""Writing files and folders so that a kill never leaves half of one in place.

A whole file is written to a temporary sibling and renamed over the target (a rename within one
folder is atomic), so a reader sees the old file or the new one, never a torn one. A folder (a
checkpoint) is written into a temporary sibling folder and swapped in by :func:`publish_dir`; the
previous folder stays intact until the swap, and :func:`recover_dir` puts it back if a kill fell
between the two renames of the swap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[TextIO]:
    """A text handle on a temporary sibling of ``path``, renamed over it once written and synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling and a rename."""
    path = Path(path)
    with _replacing(path) as fh:
        fh.write(text)
    return path


def atomic_write_json(path: Path, value: Any, *, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=indent, ensure_ascii=False))


def atomic_write_lines(path: Path, lines: Iterable[str]) -> int:
    """Write one line per item (a JSONL file) atomically; returns the number of lines."""
    count = 0
    with _replacing(Path(path)) as fh:
        for line in lines:
            fh.write(line + "\n")
            count += 1
    return count


HASH_LIMIT = 256 * 2**20  # up to this many bytes a path is identified by content, beyond by size and time


def folder_identity(path: str | Path) -> str:
    """The one identity of a file or folder (a checkpoint, a data file, an artifact), as 16 hex
    digits: its resolved path and every file in it (hidden files aside), by content when they add up
    to at most :data:`HASH_LIMIT` (a rebuilt tiny model with the same bytes is the same model), else by
    size and modification time (a retrained checkpoint at the same path differs). A name that is not
    on disk (``tiny``, a hub id) is its own identity."""
    root = Path(path)
    if not root.exists():
        return str(path)
    if root.is_file():
        files = [root]
    else:
        files = sorted(
            f
            for f in root.rglob("*")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts)
        )
    by_content = sum(f.stat().st_size for f in files) <= HASH_LIMIT
    digest = hashlib.sha256(str(root.resolve()).encode())
    for f in files:
        name = f.name if f == root else str(f.relative_to(root))
        stat = f.stat()
        part = sha256_file(f) if by_content else f"{stat.st_size}:{stat.st_mtime_ns}"
        digest.update(f"\n{name}:{part}".encode())
    return digest.hexdigest()[:16]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def staging_dir(final: Path) -> Path:
    """A fresh, empty temporary sibling of ``final`` to write a folder into before publishing it."""
    final = Path(final)
    staging = final.with_name(f"{final.name}.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    return staging


def umask() -> int:
    """This process's umask (read without changing it where Linux says it; else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(root: Path) -> None:
    """Give ``root`` and everything in it the modes a plain ``open``/``mkdir`` would have given:
    ``0o666``/``0o777`` less the umask. Libraries that write through ``tempfile.mkstemp`` and a rename
    (safetensors' ``save_file``: ``model.safetensors`` comes out ``0600``) make files private to their
    writer, which breaks a shared MLflow server or Dagster instance reading them as another user."""
    mask = umask()
    root = Path(root)
    for path in (root, *root.rglob("*")) if root.is_dir() else (root,):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        full = 0o777 if path.is_dir() or mode & 0o111 else 0o666
        if mode & 0o777 != full & ~mask:
            path.chmod(full & ~mask)


def _previous(final: Path) -> Path:
    return final.with_name(f"{final.name}.previous")


def recover_dir(final: Path) -> None:
    """Undo a swap a kill interrupted: the previous folder comes back when ``final`` is missing."""
    final = Path(final)
    previous = _previous(final)
    if previous.exists():
        if final.exists():
            shutil.rmtree(previous)
        else:
            previous.rename(final)


def publish_dir(staging: Path, final: Path) -> Path:
    """Swap the finished ``staging`` folder in at ``final``; the old ``final`` is removed only
    after the new one is in place. Its files get the umask's modes first (:func:`follow_umask`)."""
    staging, final = Path(staging), Path(final)
    follow_umask(staging)  # the weights a library wrote privately become as readable as any file here
    recover_dir(final)
    previous = _previous(final)
    if final.exists():
        final.rename(previous)
    staging.rename(final)
    if previous.exists():
        shutil.rmtree(previous)
    return final
