"""The gain of one policy over another on the same held-out tasks, with a paired bootstrap interval
over tasks and seeds, so a table of a few dozen tasks says whether a difference is more than noise.

Design: every seed evaluates both policies on the same tasks, so the data is a seeds x tasks
matrix of reward differences (a crossed design: a task is the same task under every seed). One
bootstrap resample draws seeds with replacement and, independently, tasks with replacement, and
takes the mean difference over the drawn rows and columns; the interval is the resamples' 2.5th
and 97.5th percentiles. Resampling both factors counts both sources of noise, the task sample and
the training seed; with one seed only the task sample's is counted (the result's ``seeds`` says
how many there were).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000


class UnpairedTasks(ValueError):
    """The two policies were not evaluated on the same tasks under every seed."""


@dataclass(frozen=True)
class PairedGain:
    """Mean reward gain of the second policy over the first, and its bootstrap interval."""

    mean: float
    low: float
    high: float
    n_tasks: int
    seeds: int
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def verdict(self) -> str:
        if not self.excludes_zero:
            return "the interval includes zero: no difference can be claimed"
        direction = "higher" if self.low > 0 else "lower"
        return f"the interval excludes zero: {direction} than the baseline"

    def line(self, name: str) -> str:
        """``<name>=<mean> ci95=[<lo>,<hi>] n_tasks=<n> seeds=<k>``."""
        pct = round(self.level * 100)
        return (
            f"{name}={self.mean:.4f} ci{pct}=[{self.low:.4f},{self.high:.4f}] "
            f"n_tasks={self.n_tasks} seeds={self.seeds}"
        )


def difference_matrix(
    baseline: Mapping[int, Mapping[str, float]], other: Mapping[int, Mapping[str, float]]
) -> np.ndarray:
    """seeds x tasks of ``other - baseline``, seeds and tasks in sorted order. Both must hold the
    same seeds, and under every seed the same tasks: a paired comparison has no missing cells."""
    if sorted(baseline) != sorted(other) or not baseline:
        raise UnpairedTasks(f"seeds differ: {sorted(baseline)} vs {sorted(other)}")
    tasks = sorted(next(iter(baseline.values())))
    for seed in sorted(baseline):
        for side, rewards in (("baseline", baseline[seed]), ("other", other[seed])):
            if sorted(rewards) != tasks:
                missing = sorted(set(tasks) ^ set(rewards))[:5]
                raise UnpairedTasks(f"seed {seed}: the {side} was evaluated on other tasks ({missing} ...)")
    return np.array(
        [[other[s][t] - baseline[s][t] for t in tasks] for s in sorted(baseline)], dtype=np.float64
    )


def paired_gain(
    baseline: Mapping[int, Mapping[str, float]],
    other: Mapping[int, Mapping[str, float]],
    *,
    resamples: int = RESAMPLES,
    level: float = 0.95,
    rng_seed: int = 0,
) -> PairedGain:
    """The gain of ``other`` over ``baseline`` (each: seed -> task id -> reward) and its paired
    bootstrap interval over tasks and seeds (see the module docstring)."""
    diff = difference_matrix(baseline, other)
    k, n = diff.shape
    rng = np.random.default_rng(rng_seed)
    # counts of each seed and task in every resample; the resample's mean is a weighted mean
    seed_counts = np.stack([np.bincount(rng.integers(0, k, k), minlength=k) for _ in range(resamples)])
    task_counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)])
    means = np.einsum("bk,kn,bn->b", seed_counts, diff, task_counts) / (k * n)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedGain(float(diff.mean()), float(low), float(high), n, k, level)
