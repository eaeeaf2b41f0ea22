"""Report-generation metrics computed exactly as pycocoevalcap computes them, only faster.

- BLEU-1..4: pycocoevalcap's BleuScorer: corpus-level, clipped n-gram matches summed over the
  corpus, brevity penalty from the *closest* reference length (ties -> the shorter one), and its
  smoothing constants (tiny = 1e-15 on matches, small = 1e-9 on guesses).
- ROUGE-L: per-sample LCS F-measure with beta = 1.2, max precision and max recall over the
  references, averaged over samples. Tokens are `split(" ")` like pycocoevalcap (an empty caption
  is one empty token).
- CIDEr-D: pycocoevalcap's Cider: tf-idf n-gram vectors (n = 1..4), document frequencies from the
  references of the scored corpus, idf = log(N) - log(max(1, df)), clipped similarity, Gaussian
  length penalty with sigma = 6 on the *bigram* count difference (pycocoevalcap's `length`
  counts bigrams), mean over n, mean over references, x10.

Why re-implemented: pycocoevalcap recomputes reference vectors per pair, runs LCS as a pure
Python O(n*m) table, and cannot recompute a corpus BLEU for 1,000 bootstrap resamples. Here each
sample's sufficient statistics are computed once (n-gram counts, bit-parallel LCS) so a resample is
a matrix product (pefomed.score.stats; pefomed.score.nlg builds the
metric specs from these kernels). Parity to 1e-6 is tested against pycocoevalcap.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from pefomed.metrics.tokenize import ptb_tokenize_many
from pefomed.metrics.tokenize import tokenizer as get_tokenizer

N = 4
SIGMA = 6.0
BETA = 1.2
_TINY = 1e-15
_SMALL = 1e-9


def ngram_counts(words: list[str], n: int = N) -> Counter:
    counts: Counter = Counter()
    for k in range(1, n + 1):
        # the k-grams in text order, as tuples built by zip in C
        counts.update(zip(*[words[j:] for j in range(k)]))
    return counts


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Crochemore et al. 2001): one bit per
    token of the shorter sequence, one big-int update per token of the longer one."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for tok in a:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def rouge_l(hyp: str, refs: list[str]) -> float:
    cand = hyp.split(" ")
    prec, rec = [], []
    for ref in refs:
        toks = ref.split(" ")
        lcs = lcs_length(toks, cand)
        prec.append(lcs / float(len(cand)))
        rec.append(lcs / float(len(toks)))
    p, r = max(prec), max(rec)
    if p != 0 and r != 0:
        return ((1 + BETA ** 2) * p * r) / float(r + BETA ** 2 * p)
    return 0.0


def bleu_stats(hyp_counts: Counter, hyp_len: int, ref_counts: list[Counter], ref_lens: list[int]) -> np.ndarray:
    """[testlen, closest reflen, guess_1..4, correct_1..4] for one sample."""
    maxref: dict[tuple, int] = {}
    for counts in ref_counts:
        for gram, c in counts.items():
            if c > maxref.get(gram, 0):
                maxref[gram] = c
    correct = [0] * N
    for gram, c in hyp_counts.items():
        correct[len(gram) - 1] += min(maxref.get(gram, 0), c)
    reflen = min((abs(length - hyp_len), length) for length in ref_lens)[1]
    guess = [max(0, hyp_len - k + 1) for k in range(1, N + 1)]
    return np.array([hyp_len, reflen, *guess, *correct], dtype=np.float64)


def bleu_from_sums(sums: np.ndarray, order: int) -> np.ndarray:
    """Corpus BLEU-`order` from summed bleu_stats (..., 10), pycocoevalcap's arithmetic."""
    sums = np.asarray(sums, dtype=np.float64)
    bleu = np.ones(sums.shape[:-1])
    for k in range(order):
        bleu = bleu * (sums[..., 6 + k] + _TINY) / (sums[..., 2 + k] + _SMALL)
    score = bleu ** (1.0 / order)
    ratio = (sums[..., 0] + _TINY) / (sums[..., 1] + _SMALL)
    with np.errstate(divide="ignore", over="ignore"):
        penalty = np.where(ratio < 1, np.exp(1 - 1 / np.where(ratio > 0, ratio, 1e-300)), 1.0)
    return score * penalty


def _tfidf(counts: Counter, idf: dict, log_n: float):
    """tf-idf weights of one caption's n-grams (one dict, in the caption's n-gram order), the
    norm per n and pycocoevalcap's `length` (its count of bigrams)."""
    vec: dict = {}
    norm = [0.0] * N
    length = 0
    for gram, tf in counts.items():
        # idf of an n-gram absent from every reference: log N - log(max(1, 0)) = log N
        w = float(tf) * idf.get(gram, log_n)
        vec[gram] = w
        norm[len(gram) - 1] += w * w
        if len(gram) == 2:  # pycocoevalcap's `length` counts bigrams (its `n == 1`)
            length += tf
    return vec, [math.sqrt(x) for x in norm], length


def _tracked(items, description: str, progress: bool, total: int):
    if not progress:
        return items
    from pefomed.console import track

    return track(items, description, total=total)


def _document_frequency(ref_counts) -> Counter:
    df: Counter = Counter()
    for refs in ref_counts:
        df.update(refs[0].keys() if len(refs) == 1 else set().union(*[c.keys() for c in refs]))
    return df


def _idf(df: Counter, n: int) -> tuple[dict, float]:
    """idf of each reference n-gram, computed once per distinct n-gram with the arithmetic
    pycocoevalcap applies per occurrence: log N - log(max(1, df))."""
    log_n = math.log(float(n))
    return {gram: log_n - math.log(max(1.0, float(d))) for gram, d in df.items()}, log_n


def _cider_one(hyp: Counter, refs: list[Counter], idf: dict, log_n: float) -> float:
    vh, nh, lh = _tfidf(hyp, idf, log_n)
    total = [0.0] * N
    for ref in refs:
        vr, nr, lr = _tfidf(ref, idf, log_n)
        penalty = math.exp(-((lh - lr) ** 2) / (2 * SIGMA ** 2))
        val = [0.0] * N
        for gram, w in vh.items():
            r = vr.get(gram)
            if r is not None:  # an n-gram missing from the reference adds min(w, 0) * 0 = 0
                val[len(gram) - 1] += min(w, r) * r
        for k in range(N):
            v = val[k]
            if nh[k] != 0 and nr[k] != 0:
                v /= nh[k] * nr[k]
            total[k] += v * penalty
    # np.mean of four numbers: added left to right, then divided
    return (((total[0] + total[1]) + total[2]) + total[3]) / N / len(refs) * 10.0


def cider_scores(hyp_counts: list[Counter], ref_counts: list[list[Counter]], progress: bool = False) -> np.ndarray:
    """Per-sample CIDEr-D with document frequencies from these references."""
    idf, log_n = _idf(_document_frequency(ref_counts), len(ref_counts))
    scores = np.zeros(len(hyp_counts))
    for i, (hyp, refs) in _tracked(enumerate(zip(hyp_counts, ref_counts)), "CIDEr-D", progress, len(hyp_counts)):
        scores[i] = _cider_one(hyp, refs, idf, log_n)
    return scores


class NlgStats:
    """Per-sample sufficient statistics of BLEU, ROUGE-L and CIDEr-D for tokenized captions.

    Two passes: BLEU, ROUGE-L and CIDEr's document frequencies, then CIDEr-D itself. The n-gram
    counts of the first pass are kept for the second only up to KEEP_COUNTS samples (about 23 kB
    each); above, the second pass counts them again (a few percent more time), so scoring 50,000
    reports does not hold a gigabyte of n-gram dictionaries."""

    KEEP_COUNTS = 10_000

    def __init__(self, hyps: list[str], refs: list[list[str]], progress: bool = False):
        if len(hyps) != len(refs):
            raise ValueError("one list of references per hypothesis")
        if any(len(r) == 0 for r in refs):
            raise ValueError("every hypothesis needs at least one reference")
        keep = len(hyps) <= self.KEEP_COUNTS
        kept: list[tuple[Counter, list[Counter]]] = []
        bleu, rouge = [], []
        df: Counter = Counter()
        for hyp, rs in _tracked(zip(hyps, refs), "BLEU / ROUGE-L", progress, len(hyps)):
            hw, rw = hyp.split(), [r.split() for r in rs]
            hc, rc = ngram_counts(hw), [ngram_counts(w) for w in rw]
            bleu.append(bleu_stats(hc, len(hw), rc, [len(w) for w in rw]))
            rouge.append(rouge_l(hyp, rs))
            df.update(rc[0].keys() if len(rc) == 1 else set().union(*[c.keys() for c in rc]))
            if keep:
                kept.append((hc, rc))
        self.bleu = np.stack(bleu) if hyps else np.zeros((0, 10))
        self.rouge = np.array(rouge, dtype=np.float64)
        self.cider = np.zeros(len(hyps))
        if hyps:
            idf, log_n = _idf(df, len(hyps))
            del df
            pairs = kept if keep else ((ngram_counts(h.split()), [ngram_counts(r.split()) for r in rs])
                                       for h, rs in zip(hyps, refs))
            for i, (hc, rc) in _tracked(enumerate(pairs), "CIDEr-D", progress, len(hyps)):
                self.cider[i] = _cider_one(hc, rc, idf, log_n)

    def corpus(self) -> dict[str, float]:
        sums = self.bleu.sum(axis=0)
        out = {f"BLEU-{k}": float(bleu_from_sums(sums, k)) for k in range(1, N + 1)}
        out["ROUGE-L"] = float(np.mean(self.rouge))
        out["CIDEr-D"] = float(np.mean(self.cider))
        return out


def tokenize_pairs(hyps: list[str], refs: list[list[str]], tokenizer: str = "ptb", info: dict | None = None,
                   progress: bool = False):
    """Tokenized hypotheses and references. For ptb, all captions go through one
    ptb_tokenize_many call (the jar starts at most once); `info` receives which tokenizer produced
    how many captions."""
    if tokenizer != "ptb":
        tok = get_tokenizer(tokenizer)
        return [tok(h) for h in hyps], [[tok(r) for r in rs] for rs in refs]
    flat = list(hyps) + [r for rs in refs for r in rs]
    tokens, used = ptb_tokenize_many(flat, progress=progress)
    if info is not None:
        info.update(used)
    out_h, pos = tokens[:len(hyps)], len(hyps)
    out_r = []
    for rs in refs:
        out_r.append(tokens[pos:pos + len(rs)])
        pos += len(rs)
    return out_h, out_r


def corpus_scores(hyps: list[str], refs: list[list[str]], tokenizer: str = "ptb") -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr-D of raw captions (tokenized here)."""
    th, tr = tokenize_pairs(hyps, refs, tokenizer)
    return NlgStats(th, tr).corpus()
