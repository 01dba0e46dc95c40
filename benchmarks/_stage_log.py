"""Shared by the benchmarks that run the pipeline's stages one by one (``learning.py``,
``methods.py``): each stage's wall time and peak memory, printed as it finishes.

A helper, not an entry point: importing it changes no environment.
"""

from __future__ import annotations

from eto_assets.assets.meter import MemoryPeak
from eto_assets.config.memory import trim


class StageLog:
    """Wall time and peak memory of every stage, printed as it finishes (``peaks``, in order)."""

    def __init__(self, width: int = 14) -> None:
        self.peaks: list[MemoryPeak] = []
        self.labels: list[str] = []
        self.width = width

    def __call__(self, label: str, work):
        with MemoryPeak() as peak:
            result = work()
        trim()  # as the asset wrapper does between stages
        self.peaks.append(peak)
        self.labels.append(label)
        print(
            f"  {label:<{self.width}} {peak.wall_s / 60:5.2f} min  peak {peak.process_gb:.2f} GB "
            f"(+ environments {peak.children_gb:.2f} GB)",
            flush=True,
        )
        return result
