"""Bootstrap intervals (sample- or cluster-level), proportion intervals, paired comparisons, the
exact McNemar test and the Holm correction.

Every metric is expressed as a function of *sums of per-sample statistics* (accuracy = sum of hits
/ count; corpus BLEU = f(sum of clipped matches, sum of lengths, ...)). A bootstrap resample is then
a weight vector w (how often each sample was drawn) and the resampled sums are one matrix product
W @ S for all resamples at once, so corpus metrics are recomputed per resample at numpy speed.
The same W is reused for every metric of a run and for both sides of a paired comparison, so the
intervals of different metrics come from the same resamples.

Clustered data (VQA-RAD and SLAKE ask many questions about one image): a *cluster* bootstrap
draws clusters with replacement and gives every sample its cluster's draw count as weight, so
questions about one image enter or leave a resample together. That is still one weight matrix,
so nothing downstream changes. When every cluster holds one sample the weights are bit-identical
to the sample bootstrap with the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from pefomed.options import flag_of

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_ALPHA = 0.05

TEST_BOOTSTRAP = "paired bootstrap"
TEST_MCNEMAR = "exact McNemar"


def cluster_codes(keys: Sequence[object | None]) -> np.ndarray:
    """Cluster index per sample, numbered in order of first appearance; a None key is a cluster of
    its own. First-appearance order is what makes singleton clusters reproduce the sample
    bootstrap exactly (cluster j is sample j)."""
    codes = np.empty(len(keys), dtype=np.int64)
    seen: dict[object, int] = {}
    for i, key in enumerate(keys):
        if key is None:
            codes[i] = len(seen)
            seen[("__own__", i)] = codes[i]
        else:
            codes[i] = seen.setdefault(key, len(seen))
    return codes


def _one_blas_thread():
    """These products are thin ((32, clusters) @ (clusters, k)): one BLAS thread computes them in
    milliseconds, while OpenBLAS's thread pool, on a machine whose cores are busy (METEOR's JVM
    runs meanwhile; other jobs), spun for seconds of CPU on them (4 s CPU instead of 0.01 s for
    k = 42 at a load average of 13 on 2 cores). threadpoolctl (installed with scipy/scikit-learn)
    sets the limit for the block only; without it the products run as before."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class Bootstrap:
    """Resample weights for n samples: W[b, i] = times sample i (or its cluster) is drawn in
    resample b. `clusters[i]` is sample i's cluster index (None: every sample its own cluster).

    Stored compactly as `counts[b, c]` (draws of cluster c in resample b, 16-bit) and never
    expanded to the dense (B, n) matrix: resampled sums aggregate the statistics per cluster first
    and multiply in blocks of resamples, so scoring 200,000 rows keeps memory bounded (the dense
    float64 matrix alone would be 1.6 GB at 1,000 resamples)."""

    counts: np.ndarray  # (B, c) uint16 (uint32 for very large c)
    seed: int
    clusters: np.ndarray | None = None
    unit: str = "sample"

    BLOCK = 32  # resamples per draw and per matrix product (bounds the temporary copies)
    CACHED = 8  # resampled sums kept per Bootstrap, by statistics array (see `sums`)

    def __post_init__(self):
        # Metrics that share one statistics array (BLEU-1..4; every clinical metric; ROUGE-L and
        # CIDEr-D) are resampled once: `sums` remembers its last results by array identity. The
        # arrays are held here, so an id is never reused while its entry lives.
        self._cache: list[tuple[np.ndarray, np.ndarray]] = []
        self._identity: bool | None = None

    @classmethod
    def make(cls, n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
             clusters: Sequence[object | None] | np.ndarray | None = None, unit: str = "sample") -> "Bootstrap":
        rng = np.random.default_rng(seed)
        codes = None if clusters is None else cluster_codes(list(clusters))
        if codes is not None and len(codes) != n:
            raise ValueError(f"{len(codes)} cluster ids for {n} samples")
        resamples = max(resamples, 0)
        if n == 0 or resamples == 0:
            return cls(np.zeros((resamples, 0 if codes is None or n == 0 else int(codes.max()) + 1), np.uint16),
                       seed, codes, unit)
        c = n if codes is None else int(codes.max()) + 1
        # Multinomial counts == drawing c clusters with replacement. Drawn in blocks from the one
        # generator: the same stream, row for row, as a single call (tests pin it), without the
        # int64 (B, c) temporary.
        counts = np.empty((resamples, c), dtype=np.uint16 if c < 2 ** 16 else np.uint32)
        p = np.full(c, 1.0 / c)
        for start in range(0, resamples, cls.BLOCK):
            stop = min(start + cls.BLOCK, resamples)
            counts[start:stop] = rng.multinomial(c, p, size=stop - start)
        return cls(counts, seed, codes, unit)

    @property
    def weights(self) -> np.ndarray:
        """The dense (B, n) float64 weights (small data and tests; `sums` never builds them)."""
        dense = self.counts.astype(np.float64)
        return dense if self.clusters is None else dense[:, self.clusters]

    @property
    def resamples(self) -> int:
        return self.counts.shape[0]

    @property
    def n_clusters(self) -> int:
        return self.counts.shape[1]

    def sums(self, stats: np.ndarray) -> np.ndarray:
        """Resampled column sums of per-sample statistics `stats` (n, k) -> (B, k).

        The result is remembered for the same array object (a float64 `stats` is not copied), so
        specs sharing one statistics array cost one pass over the counts; statistics arrays are
        therefore never modified once built (MetricSpec's are not). Returns a read-only array."""
        given = stats
        for held, out in self._cache:
            if held is given:
                return out
        stats = np.asarray(stats, dtype=np.float64)
        if stats.ndim == 1:
            stats = stats[:, None]
        if self.clusters is not None and len(stats) and not self._identity_clusters():
            # sum of w[b, i] * s[i] = sum over clusters of counts[b, c] * (sum of s[i] in c);
            # bincount adds in row order, as np.add.at did, at a fraction of its cost
            stats = np.stack([np.bincount(self.clusters, weights=col, minlength=self.n_clusters)
                              for col in stats.T], axis=1)
        out = np.empty((self.resamples, stats.shape[1]))
        with _one_blas_thread():
            for start in range(0, self.resamples, self.BLOCK):
                stop = min(start + self.BLOCK, self.resamples)
                out[start:stop] = self.counts[start:stop].astype(np.float64) @ stats
        out.flags.writeable = False
        if isinstance(given, np.ndarray):
            self._cache = [(given, out)] + self._cache[:self.CACHED - 1]
        return out

    def _identity_clusters(self) -> bool:
        """Cluster i is row i (every row its own cluster, numbered by first appearance): the
        per-cluster sums are then the rows themselves."""
        if self._identity is None:
            self._identity = len(self.clusters) == self.n_clusters and \
                bool(np.array_equal(self.clusters, np.arange(len(self.clusters))))
        return self._identity


def independent(clusters: np.ndarray | None, mask: np.ndarray | None = None) -> bool:
    """True when no two samples (within `mask`) share a cluster: tests that assume independent
    pairs (McNemar) and unadjusted binomial intervals are then valid."""
    if clusters is None:
        return True
    codes = clusters if mask is None else clusters[np.asarray(mask, dtype=bool)]
    return len(np.unique(codes)) == len(codes)


def estimate(value: float | None, low: float | None, high: float | None, n: int, **extra) -> dict:
    """One METRICS.json entry; non-finite numbers become null so the JSON stays strict."""
    return {"value": _clean(value), "ci_low": _clean(low), "ci_high": _clean(high), "n": int(n), **extra}


def _clean(x):
    return None if x is None or not math.isfinite(float(x)) else float(x)


def interval(samples: np.ndarray, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """Percentile interval, ignoring resamples where the statistic is undefined (e.g. no sample of
    a subgroup was drawn)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def wilson(successes: float, n: float, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """Wilson score interval for a proportion (Wilson 1927). Unlike the percentile bootstrap it
    has positive width at 0/n and n/n (0 of 130 right: [0, 0.029] at 95%)."""
    from scipy.stats import norm

    if n <= 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(1 - alpha / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0))
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson(successes: float, n: float, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """Exact (Clopper-Pearson 1934) interval from beta quantiles; non-integer counts (an
    effective sample size) are allowed, as in Korn & Graubard (1998)."""
    from scipy.stats import beta

    if n <= 0:
        return float("nan"), float("nan")
    low = 0.0 if successes <= 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes >= n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return low, high


PROPORTION_INTERVALS = {"wilson": wilson, "clopper-pearson": clopper_pearson}


def design_effect(scores: np.ndarray, mask: np.ndarray, clusters: np.ndarray | None) -> float:
    """Kish design effect of a (masked) mean under clustering: the cluster-robust (linearized)
    variance of the ratio mean over the binomial one, floored at 1 (clustering is never taken to
    make an interval narrower). Exactly 1 when no cluster holds two masked samples."""
    mask = np.asarray(mask, dtype=bool)
    if clusters is None or independent(clusters, mask):
        return 1.0
    y = np.asarray(scores, dtype=np.float64)[mask]
    codes = clusters[mask]
    n = y.size
    p = y.mean()
    if p <= 0 or p >= 1:
        return 1.0  # no variance to inflate; the proportion interval already handles 0/n and n/n
    resid = np.bincount(codes, weights=y - p)
    var_cluster = float(np.sum(resid ** 2)) / (n * n)
    var_binomial = p * (1 - p) / n
    return max(1.0, var_cluster / var_binomial)


def proportion_interval(scores: np.ndarray, mask: np.ndarray, clusters: np.ndarray | None,
                        alpha: float = DEFAULT_ALPHA, method: str = "wilson") -> tuple[float, float, float]:
    """(low, high, effective n) of a masked 0/1 mean: the proportion interval at the effective
    sample size n / design effect."""
    mask = np.asarray(mask, dtype=bool)
    n = int(mask.sum())
    if n == 0:
        return float("nan"), float("nan"), 0.0
    k = float(np.asarray(scores, dtype=np.float64)[mask].sum())
    n_eff = n / design_effect(scores, mask, clusters)
    low, high = PROPORTION_INTERVALS[method](k / n * n_eff, n_eff, alpha)
    return low, high, n_eff


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
    50/50. Returns the discordant counts and the two-sided p-value. Assumes independent pairs."""
    from scipy.stats import binomtest

    a = np.asarray(a_correct) > 0.5
    b = np.asarray(b_correct) > 0.5
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p_value": p}


def seed_draws(n_seeds: int, resamples: int, seed: int, side: int) -> np.ndarray:
    """(B, n_seeds) counts: which training seeds each resample uses (drawn with replacement, the
    outer level of a seeds x test-set bootstrap). A separate generator per side keeps the id
    weights unchanged, and one seed always gives all-ones (the plain paired bootstrap)."""
    if n_seeds == 1:
        return np.ones((resamples, 1))
    rng = np.random.default_rng([seed, 1 + side])
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=resamples).astype(np.float64)


def _as_seed_list(stats) -> list[np.ndarray]:
    out = []
    for s in (stats if isinstance(stats, (list, tuple)) else [stats]):
        s = np.asarray(s, dtype=np.float64)
        out.append(s[:, None] if s.ndim == 1 else s)
    return out


def _seed_mean(stats: list[np.ndarray], fn: Callable, boot: Bootstrap, draws: np.ndarray) -> np.ndarray:
    """Per resample: the metric on the resampled ids, averaged over the drawn seeds."""
    values = np.stack([fn(boot.sums(s)) for s in stats], axis=1)  # (B, S)
    return (values * draws).sum(axis=1) / draws.sum(axis=1)


def paired_difference(stats_a, stats_b, fn: Callable, boot: Bootstrap | None,
                      alpha: float = DEFAULT_ALPHA, n: int | None = None,
                      values: tuple[float, float] | None = None) -> dict:
    """Paired bootstrap of metric(A) - metric(B) over the same resampled ids (or clusters).

    `stats_a`/`stats_b`: per-sample statistics (n, k), or a list of them, one per training seed;
    with several seeds each resample also draws seeds with replacement on each side and averages
    the metric over them, so seed variance enters the interval. The verdict is 'win' when the
    (1 - alpha) interval of the difference lies above 0, 'loss' below 0, else 'tie'; without
    resamples there is no interval and no verdict (verdict None). p_value: two-sided bootstrap p
    (twice the smaller share of differences on either side of 0). `n`: the samples the metric
    covers (a subgroup's n, not the file's); `values`: (A, B) when a reference tool computes them.
    """
    sa, sb = _as_seed_list(stats_a), _as_seed_list(stats_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        if values is None:
            a = float(np.mean([fn(s.sum(0)[None])[0] for s in sa]))
            b = float(np.mean([fn(s.sum(0)[None])[0] for s in sb]))
        else:
            a, b = values
        diffs = np.array([])
        if boot is not None and boot.resamples:
            diffs = (_seed_mean(sa, fn, boot, seed_draws(len(sa), boot.resamples, boot.seed, 0))
                     - _seed_mean(sb, fn, boot, seed_draws(len(sb), boot.resamples, boot.seed, 1)))
    diffs = diffs[np.isfinite(diffs)]
    n = sa[0].shape[0] if n is None else n
    if not diffs.size:
        return {**estimate(a - b, None, None, n), "a": _clean(a), "b": _clean(b), "p_value": None,
                "verdict": None, "test": None}
    low, high = interval(diffs, alpha)
    p = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    verdict = "win" if low > 0 else "loss" if high < 0 else "tie"
    return {**estimate(a - b, low, high, n), "a": _clean(a), "b": _clean(b), "p_value": p,
            "verdict": verdict, "test": TEST_BOOTSTRAP}


def decide(entry: dict, *, alpha: float, binary_a: np.ndarray | None = None, binary_b: np.ndarray | None = None,
           mask: np.ndarray | None = None, clusters: np.ndarray | None = None, seeds: tuple[int, int] = (1, 1),
           unit: str = "sample") -> dict:
    """Choose and name the test that decides a paired comparison `entry` (from paired_difference).

    - 0/1 outcomes, one seed per side, no two compared samples in one cluster: the exact McNemar
      test decides (p < alpha; direction from the difference). The bootstrap interval is still
      shown, and a `note` says so when the two disagree.
    - otherwise the paired (cluster) bootstrap decides when there are resamples; McNemar, if
      computed, is shown for information only (it assumes independent pairs).
    - no resamples and McNemar not applicable: no verdict (`verdict` None, `no_verdict` says why).
    """
    entry = dict(entry)
    boot_verdict, boot_p = entry.get("verdict"), entry.get("p_value")
    entry["bootstrap_p_value"] = boot_p
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    why_not = "the metric is not a 0/1 outcome"
    if binary_a is not None and binary_b is not None:
        if seeds != (1, 1):
            why_not = "several seeds per side"
        else:
            pick = slice(None) if mask is None else mask
            entry["mcnemar"] = mcnemar_exact(binary_a[pick], binary_b[pick])
            why_not = "" if independent(clusters, mask) else \
                f"questions share {'an' if unit[0] in 'aeiou' else 'a'} {unit}"
            if why_not:
                entry["mcnemar"]["note"] = f"not used: {why_not}, and McNemar assumes independent pairs"
    if not why_not:
        p = entry["mcnemar"]["p_value"]
        value = entry.get("value") or 0.0
        entry["verdict"] = ("win" if value > 0 else "loss") if p < alpha and value != 0 else "tie"
        entry["p_value"], entry["test"] = p, TEST_MCNEMAR
        if boot_verdict is not None and (boot_verdict == "tie") != (entry["verdict"] == "tie"):
            entry["note"] = (f"the bootstrap interval alone would say {boot_verdict}; the exact McNemar "
                             f"test (p = {p:.4g}) decides for 0/1 outcomes")
    elif boot_verdict is not None:
        entry["test"] = (TEST_BOOTSTRAP + ("" if unit == "sample" else f" over {unit}s")
                         + (" and seeds" if seeds != (1, 1) else ""))
    else:
        entry["verdict"], entry["test"], entry["p_value"] = None, None, None
        entry["no_verdict"] = (f"no bootstrap resamples ({flag_of('score', 'bootstrap')} 0), and exact McNemar does "
                               f"not apply: {why_not}")
    return entry


def paired_compare(scores_a, scores_b, clusters: Sequence[object | None] | None = None, *,
                   resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, alpha: float = DEFAULT_ALPHA,
                   binary: bool | None = None) -> dict:
    """Paired comparison of two lists of per-id scores (same ids, same order) for a study runner.

    scores_a / scores_b: (n,) per-id scores, or (seeds, n) for several training seeds per side.
    clusters: a cluster id per id (image, study, patient; None = each id alone); resamples draw
    clusters. binary: whether scores are 0/1 outcomes (default: detected). Returns
    {difference, ci_low, ci_high, p_value, verdict, test, a, b, n, n_clusters} with the test
    chosen as in `decide` (exact McNemar for independent 0/1 pairs, else the paired bootstrap).
    """
    a = np.atleast_2d(np.asarray(scores_a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(scores_b, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"scores_a has {a.shape[1]} ids, scores_b {b.shape[1]}: pair them by id first")
    n = a.shape[1]
    boot = Bootstrap.make(n, resamples, seed, clusters=clusters, unit="cluster" if clusters is not None else "sample")
    if binary is None:
        binary = bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
    stats_a = [mean_stats(row)[0] for row in a]
    stats_b = [mean_stats(row)[0] for row in b]
    entry = paired_difference(stats_a, stats_b, _ratio, boot if resamples else None, alpha, n=n)
    entry = decide(entry, alpha=alpha, binary_a=a[0] if binary else None, binary_b=b[0] if binary else None,
                   clusters=boot.clusters, seeds=(a.shape[0], b.shape[0]), unit=boot.unit)
    return {"difference": entry["value"], "ci_low": entry["ci_low"], "ci_high": entry["ci_high"],
            "p_value": entry["p_value"], "verdict": entry["verdict"], "test": entry["test"],
            "a": entry["a"], "b": entry["b"], "n": n, "n_clusters": boot.n_clusters,
            **{k: entry[k] for k in ("mcnemar", "note", "no_verdict") if k in entry}}


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm (1979) step-down adjusted p-values, in the input order: sort ascending, multiply the
    i-th smallest (1-based) by m - i + 1, take the running maximum, cap at 1. None/NaN entries
    stay None and do not count in m."""
    vals = [None if p is None or not math.isfinite(float(p)) else float(p) for p in pvalues]
    order = sorted((p, i) for i, p in enumerate(vals) if p is not None)
    m = len(order)
    out: list[float | None] = [None] * len(vals)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


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
    binary: np.ndarray | None = None  # 0/1 per row for accuracies (McNemar, proportion intervals)
    mask: np.ndarray | None = None  # rows the metric covers (for McNemar on a subgroup)
    value: float | None = None  # overrides fn(sums) when a reference tool computes the value itself
    extra: dict | None = None

    def evaluate(self, boot: Bootstrap | None, alpha: float = DEFAULT_ALPHA,
                 proportion: str | None = "wilson", clusters: np.ndarray | None = None) -> dict:
        """The METRICS.json entry. 0/1 accuracies report the `proportion` interval (Wilson by
        default, at the cluster-adjusted effective n) as ci_low/ci_high, with the percentile
        bootstrap beside it; other metrics report the percentile bootstrap. `interval` names it.
        `clusters` (default: the bootstrap's) set the design effect of the proportion interval."""
        if clusters is None and boot is not None:
            clusters = boot.clusters
        entry = corpus_metric(self.stats, self.fn, boot, n=self.n, alpha=alpha)
        if self.value is not None:
            entry["value"] = float(self.value)
        if entry["ci_low"] is not None or entry["ci_high"] is not None:
            entry["interval"] = "percentile bootstrap"
        if self.binary is not None and proportion in PROPORTION_INTERVALS:
            mask = self.mask if self.mask is not None else np.ones(len(self.binary), bool)
            low, high, n_eff = proportion_interval(self.binary, mask, clusters,
                                                   alpha, proportion)
            entry["bootstrap_ci_low"], entry["bootstrap_ci_high"] = entry["ci_low"], entry["ci_high"]
            entry["ci_low"], entry["ci_high"] = _clean(low), _clean(high)
            entry["interval"] = proportion
            if self.n and n_eff < self.n:
                entry["n_effective"] = round(n_eff, 2)
        return {**entry, **(self.extra or {})}


def accuracy_spec(section: str, name: str, hits: np.ndarray, mask: np.ndarray, extra: dict | None = None,
                  binary: bool = True) -> MetricSpec:
    stats, fn = mean_stats(hits, mask)
    return MetricSpec(section, name, stats, fn, n=int(np.sum(mask)),
                      binary=np.asarray(hits, dtype=np.float64) if binary else None,
                      mask=np.asarray(mask, dtype=bool), extra=extra)
