"""The paired bootstrap over tasks and seeds: it agrees with SciPy's bootstrap where the two
coincide (one seed), its intervals cover a known gain about as often as they claim, seed noise
widens them, and rewards that are not paired are refused, naming the seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from eto_assets.stages.paired_gain import UnpairedTasks, paired_gain


def rewards(matrix: np.ndarray) -> dict[int, dict[str, float]]:
    return {s: {f"t{j:03d}": float(v) for j, v in enumerate(row)} for s, row in enumerate(matrix)}


def coarse_rewards(rng, seeds: int, tasks: int, shift: float, seed_sd: float = 0.0):
    """ScienceWorld-like rewards (steps of 1/12 in [0, 1]) for a baseline and a policy ``shift``
    better on average, with per-task difficulty shared by both and per-seed offsets."""
    difficulty = rng.uniform(0.1, 0.7, tasks)
    base = np.clip(difficulty + rng.normal(0, 0.15, (seeds, tasks)), 0, 1)
    offsets = rng.normal(0, seed_sd, (seeds, 1))
    other = np.clip(difficulty + shift + offsets + rng.normal(0, 0.15, (seeds, tasks)), 0, 1)
    return np.round(base * 12) / 12, np.round(other * 12) / 12


def test_one_seed_matches_scipys_percentile_bootstrap_of_the_differences():
    rng = np.random.default_rng(1)
    base, other = coarse_rewards(rng, 1, 60, 0.05)
    ours = paired_gain(rewards(base), rewards(other), resamples=20_000)
    theirs = stats.bootstrap(
        ((other - base)[0],), np.mean, n_resamples=20_000, method="percentile", rng=2
    ).confidence_interval
    assert ours.mean == pytest.approx(float((other - base).mean()))
    assert ours.low == pytest.approx(theirs.low, abs=0.006)
    assert ours.high == pytest.approx(theirs.high, abs=0.006)
    assert (ours.n_tasks, ours.seeds) == (60, 1)


def test_intervals_cover_the_true_gain_about_as_often_as_they_claim():
    # the true gain: clipping and rounding shrink the 0.03 shift a little; measured on 200k tasks
    base, other = coarse_rewards(np.random.default_rng(7), 1, 200_000, 0.03)
    truth = float((other - base).mean())
    hits, trials = 0, 150
    for trial in range(trials):
        base, other = coarse_rewards(np.random.default_rng(1000 + trial), 3, 64, 0.03, seed_sd=0.03)
        gain = paired_gain(rewards(base), rewards(other), resamples=800, rng_seed=trial)
        hits += gain.low <= truth <= gain.high
    assert 0.85 <= hits / trials <= 0.995, hits / trials


def test_seed_noise_widens_the_interval_and_a_real_gain_excludes_zero():
    rng = np.random.default_rng(3)
    calm = paired_gain(*map(rewards, coarse_rewards(rng, 5, 64, 0.15)))
    noisy = paired_gain(*map(rewards, coarse_rewards(rng, 5, 64, 0.15, seed_sd=0.1)))
    assert noisy.high - noisy.low > 1.5 * (calm.high - calm.low)
    assert calm.excludes_zero and calm.low > 0 and "higher" in calm.verdict()
    same = paired_gain(*map(rewards, coarse_rewards(rng, 5, 64, 0.0)))
    assert same.low < 0 < same.high and not same.excludes_zero and "includes zero" in same.verdict()
    assert same.line("eto_gain_unseen").startswith("eto_gain_unseen=")
    assert "n_tasks=64 seeds=5" in same.line("x")


def test_rewards_that_are_not_paired_are_refused_naming_the_seed():
    base, other = rewards(np.zeros((2, 4))), rewards(np.ones((2, 4)))
    del other[1]["t002"]
    with pytest.raises(UnpairedTasks, match=r"seed 1: the other .*t002"):
        paired_gain(base, other)
    with pytest.raises(UnpairedTasks, match="seeds differ"):
        paired_gain(base, {0: other[0]})
