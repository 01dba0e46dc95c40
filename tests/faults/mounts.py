"""Small real filesystems for fault tests: a command runs in a private mount namespace where a tmpfs of
a given size (or a read-only one) is mounted over a folder, as root or as an ordinary user
(``unshare --user --map-root-user --mount``). The mount dies with the command; nothing is left behind.
Where no namespace can be made, the tests that need one skip and say why."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@functools.cache
def namespace_prefix() -> tuple[str, ...] | None:
    """``unshare`` options that let the command mount a tmpfs here, or None."""
    if shutil.which("unshare") is None:
        return None
    for options in (("-rm",), ("-m",)):
        probe = [
            "unshare",
            *options,
            "sh",
            "-c",
            "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d",
        ]
        if subprocess.run(probe, capture_output=True, timeout=30).returncode == 0:
            return ("unshare", *options)
    return None


def need_namespace() -> tuple[str, ...]:
    prefix = namespace_prefix()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (no unshare, or user namespaces and root both unavailable)")
    return prefix


def run_on_tmpfs(
    mount: Path,
    size: str,
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    read_only: bool = False,
    copy_in: list[Path] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run ``command`` (in the repository) with a ``size`` tmpfs mounted at ``mount``: ``copy_in`` files
    are copied onto it, then it is remounted read-only when ``read_only``."""
    prefix = need_namespace()
    mount.mkdir(parents=True, exist_ok=True)
    setup = [f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(mount))}"]
    setup += [f"cp {shlex.quote(str(f))} {shlex.quote(str(mount))}/" for f in copy_in]
    if read_only:
        setup.append(f"mount -o remount,ro {shlex.quote(str(mount))}")
    script = " && ".join([*setup, "exec " + shlex.join(command)])
    base = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*prefix, "sh", "-c", script],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


PYTHON = sys.executable
