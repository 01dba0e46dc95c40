"""Peak memory of a stage: the trainer and the inference backend run in this process (its exact
high-water mark, reset at the start where Linux allows), the environments (ScienceWorld's JVM) in
child processes (sampled in a background thread)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

GB = 1024**3
_PROC = Path("/proc/self")


def _reset_high_water_mark() -> bool:
    try:
        (_PROC / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _high_water_mark_gb() -> float:
    for line in (_PROC / "status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / GB
    return 0.0


@dataclass
class MemoryPeak:
    """Largest resident set seen: this process and, separately, its children."""

    process_gb: float = 0.0
    children_gb: float = 0.0
    wall_s: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def _sample(self) -> None:
        me = psutil.Process()
        try:
            own = me.memory_info().rss
            kids = 0
            for child in me.children(recursive=True):
                try:
                    kids += child.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            return
        self.process_gb = max(self.process_gb, own / GB)
        self.children_gb = max(self.children_gb, kids / GB)

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._sample()

    def __enter__(self) -> MemoryPeak:
        self._started = time.perf_counter()
        self._exact = _reset_high_water_mark()
        self._sample()
        self._thread = threading.Thread(target=self._loop, args=(0.25,), daemon=True, name="memory-peak")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if self._exact:
            self.process_gb = max(self.process_gb, _high_water_mark_gb())
        self.wall_s = time.perf_counter() - self._started

    def metrics(self) -> dict[str, float]:
        """As stage metrics: this process's peak and its environments' peak, in GB."""
        return {
            "peak_rss_gb": round(self.process_gb, 3),
            "peak_rss_environments_gb": round(self.children_gb, 3),
        }
