"""Bootstrap intervals, paired comparisons and the McNemar test.

Every metric is expressed as a function of *sums of per-sample statistics* (accuracy = sum of hits
/ count; corpus BLEU = f(sum of clipped matches, sum of lengths, ...)). A bootstrap resample is then
a weight vector w (how often each sample was drawn) and the resampled sums are one matrix product
W @ S for all resamples at once, so corpus metrics are recomputed per resample at numpy speed.
The same W is reused for every metric of a run and for both sides of a paired comparison, so the
intervals of different metrics come from the same resamples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_ALPHA = 0.05


@dataclass
class Bootstrap:
    """Resample weights for n samples: W[b, i] = times sample i is drawn in resample b."""

    weights: np.ndarray  # (B, n) float64
    seed: int

    @classmethod
    def make(cls, n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> "Bootstrap":
        rng = np.random.default_rng(seed)
        if n == 0 or resamples <= 0:
            return cls(np.zeros((max(resamples, 0), n)), seed)
        # Multinomial counts == drawing n indices with replacement, stored compactly as counts.
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
        return cls(weights, seed)

    @property
    def resamples(self) -> int:
        return self.weights.shape[0]

    def sums(self, stats: np.ndarray) -> np.ndarray:
        """Resampled column sums of per-sample statistics `stats` (n, k) -> (B, k)."""
        stats = np.asarray(stats, dtype=np.float64)
        if stats.ndim == 1:
            stats = stats[:, None]
        return self.weights @ stats


def estimate(value: float | None, low: float | None, high: float | None, n: int, **extra) -> dict:
    """One METRICS.json entry; non-finite numbers become null so the JSON stays strict."""
    def clean(x):
        return None if x is None or not math.isfinite(float(x)) else float(x)
    return {"value": clean(value), "ci_low": clean(low), "ci_high": clean(high), "n": int(n), **extra}


def interval(samples: np.ndarray, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """Percentile interval, ignoring resamples where the statistic is undefined (e.g. no sample of
    a subgroup was drawn)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def corpus_metric(stats: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], boot: Bootstrap | None,
                  n: int | None = None, alpha: float = DEFAULT_ALPHA) -> dict:
    """Value = fn(column sums); interval = percentiles of fn over resampled sums. `fn` takes an
    array (..., k) of sums and returns (...,)."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim == 1:
        stats = stats[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(fn(stats.sum(axis=0)[None, :])[0])
        low = high = float("nan")
        if boot is not None and boot.resamples:
            low, high = interval(fn(boot.sums(stats)), alpha)
    return estimate(value, low, high, stats.shape[0] if n is None else n)


def _ratio(sums: np.ndarray) -> np.ndarray:
    return sums[..., 0] / sums[..., 1]


def mean_metric(scores: np.ndarray, boot: Bootstrap | None, mask: np.ndarray | None = None,
                alpha: float = DEFAULT_ALPHA) -> dict:
    """Mean of per-sample scores (optionally over a subgroup mask) with its bootstrap interval."""
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.ones_like(scores) if mask is None else np.asarray(mask, dtype=np.float64)
    stats = np.stack([scores * mask, mask], axis=1)
    return corpus_metric(stats, _ratio, boot, n=int(mask.sum()), alpha=alpha)


def mean_stats(scores: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, Callable]:
    """The (stats, fn) pair of a (masked) mean, for paired comparisons."""
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.ones_like(scores) if mask is None else np.asarray(mask, dtype=np.float64)
    return np.stack([scores * mask, mask], axis=1), _ratio


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """Exact (binomial) McNemar test on paired 0/1 outcomes: under H0 the discordant pairs split
    50/50. Returns the discordant counts and the two-sided p-value."""
    from scipy.stats import binomtest

    a = np.asarray(a_correct) > 0.5
    b = np.asarray(b_correct) > 0.5
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p_value": p}


def paired_difference(stats_a: np.ndarray, stats_b: np.ndarray, fn: Callable, boot: Bootstrap,
                      alpha: float = DEFAULT_ALPHA) -> dict:
    """Paired bootstrap of metric(A) - metric(B) over the same resampled ids. The verdict is 'win'
    when the (1 - alpha) interval of the difference lies above 0, 'loss' below 0, else 'tie'.
    p_value: two-sided bootstrap p (twice the smaller tail share of differences across 0)."""
    stats_a = np.asarray(stats_a, dtype=np.float64)
    stats_b = np.asarray(stats_b, dtype=np.float64)
    if stats_a.ndim == 1:
        stats_a, stats_b = stats_a[:, None], stats_b[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = float(fn(stats_a.sum(0)[None])[0])
        b = float(fn(stats_b.sum(0)[None])[0])
        diffs = fn(boot.sums(stats_a)) - fn(boot.sums(stats_b))
    diffs = diffs[np.isfinite(diffs)]
    low, high = interval(diffs, alpha)
    if diffs.size:
        p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    else:
        p = float("nan")
    verdict = "win" if low > 0 else "loss" if high < 0 else "tie"
    return {**estimate(a - b, low, high, stats_a.shape[0]), "a": a, "b": b,
            "p_value": None if not math.isfinite(p) else float(p), "verdict": verdict}


@dataclass
class MetricSpec:
    """One metric as per-sample statistics over *all* rows of a file (rows outside the metric's
    subset contribute zeros) plus the function of their sums. This form is what lets one code path
    give the value, its bootstrap interval and the paired difference against another file."""

    section: str
    name: str
    stats: np.ndarray  # (n_rows, k)
    fn: Callable[[np.ndarray], np.ndarray]
    n: int
    binary: np.ndarray | None = None  # 0/1 per row for accuracies (McNemar); None otherwise
    mask: np.ndarray | None = None  # rows the metric covers (for McNemar on a subgroup)
    value: float | None = None  # overrides fn(sums) when a reference tool computes the value itself
    extra: dict | None = None

    def evaluate(self, boot: Bootstrap | None, alpha: float = DEFAULT_ALPHA) -> dict:
        entry = corpus_metric(self.stats, self.fn, boot, n=self.n, alpha=alpha)
        if self.value is not None:
            entry["value"] = float(self.value)
        return {**entry, **(self.extra or {})}


def accuracy_spec(section: str, name: str, hits: np.ndarray, mask: np.ndarray, extra: dict | None = None,
                  binary: bool = True) -> MetricSpec:
    stats, fn = mean_stats(hits, mask)
    return MetricSpec(section, name, stats, fn, n=int(np.sum(mask)),
                      binary=np.asarray(hits, dtype=np.float64) if binary else None,
                      mask=np.asarray(mask, dtype=bool), extra=extra)
