"""What a CLI run shows: one line per stage as it finishes, then the results. Everything else that
the run prints (Dagster's event lines, the trainers' loss dictionaries, library warnings, the
environments' own output, from this process and from the stage processes it starts) goes to a log
file under ``$ETO_HOME/logs``, whose path the terminal is told at the start and at the end."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

STEP_EVENTS = ("STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY")


def log_path(home: Path, task: str) -> Path:
    return home / "logs" / f"run-{task}-{time.strftime('%Y%m%d-%H%M%S')}.log"


@contextlib.contextmanager
def output_to_log(path: Path) -> Iterator[TextIO]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so child processes and native
    code follow) to ``path``; yields a stream to the terminal. Restored on the way out, whatever
    happens. Nothing is redirected where the log cannot be opened (a full disk), nor where stdout is
    not a file descriptor (Python code capturing it, as pytest does): the run's output then follows."""
    try:
        terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        yield sys.stdout
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log = path.open("a", buffering=1)
    except OSError as exc:
        print(f"warning: no run log ({exc.strerror}: {path}); the run's output follows", file=terminal)
        try:
            yield terminal
        finally:
            terminal.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        log.close()
        terminal.close()


class StepProgress:
    """Polls the instance for the run that ``find_run`` names and prints each stage as it starts and
    as it finishes (``[ 25/67] done   sft_checkpoint  4.2 s``); ``quiet`` steps (settings
    observations, the no-ops of methods the profile leaves out) are counted, not printed."""

    def __init__(
        self,
        instance,
        find_run: Callable[[], str | None],
        total: int,
        quiet: Callable[[str], bool],
        out: TextIO,
        every: float = 1.0,
    ) -> None:
        self.instance, self.find_run, self.total, self.quiet, self.out = instance, find_run, total, quiet, out
        self.every = every
        self.done = 0
        self.started: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="eto-progress", daemon=True)
        self._cursor: str | None = None
        self._run_id: str | None = None  # asked for until the run exists, then kept

    def __enter__(self) -> StepProgress:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        with contextlib.suppress(Exception):
            self.poll()  # the last steps' lines

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):  # progress is a courtesy: never fails the run
                self.poll()

    def poll(self) -> None:
        if self._run_id is None:
            self._run_id = self.find_run()
        if self._run_id is None:
            return
        connection = self.instance.get_records_for_run(self._run_id, cursor=self._cursor)
        self._cursor = connection.cursor
        for record in connection.records:
            entry = record.event_log_entry
            event = entry.dagster_event
            if event is None or not entry.step_key:
                continue
            kind = event.event_type_value
            key = entry.step_key.replace("__", "/")
            if kind == "STEP_START":
                self.started[entry.step_key] = entry.timestamp
                if not self.quiet(entry.step_key):
                    print(f"{'':9} start  {key}", file=self.out)
            elif kind in STEP_EVENTS:
                self.done += 1
                if self.quiet(entry.step_key) and kind == "STEP_SUCCESS":
                    continue
                seconds = entry.timestamp - self.started.get(entry.step_key, entry.timestamp)
                word = {"STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED"}.get(kind, "retry")
                print(f"[{self.done:>3}/{self.total}] {word:<6} {key}  {seconds:.1f} s", file=self.out)
