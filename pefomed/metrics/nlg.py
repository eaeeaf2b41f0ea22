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
        counts.update(tuple(words[i:i + k]) for i in range(len(words) - k + 1))
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


def _tfidf(counts: Counter, df: dict, log_n: float):
    vec: list[dict] = [{} for _ in range(N)]
    norm = [0.0] * N
    length = 0
    for gram, tf in counts.items():
        k = len(gram) - 1
        w = float(tf) * (log_n - math.log(max(1.0, df.get(gram, 0.0))))
        vec[k][gram] = w
        norm[k] += w * w
        if k == 1:  # pycocoevalcap's `length` counts bigrams (its `n == 1`)
            length += tf
    return vec, [math.sqrt(x) for x in norm], length


def cider_scores(hyp_counts: list[Counter], ref_counts: list[list[Counter]]) -> np.ndarray:
    """Per-sample CIDEr-D with document frequencies from these references."""
    df: Counter = Counter()
    for refs in ref_counts:
        df.update(set().union(*[c.keys() for c in refs]))
    log_n = math.log(float(len(ref_counts)))
    scores = np.zeros(len(hyp_counts))
    for i, (hyp, refs) in enumerate(zip(hyp_counts, ref_counts)):
        vh, nh, lh = _tfidf(hyp, df, log_n)
        total = np.zeros(N)
        for ref in refs:
            vr, nr, lr = _tfidf(ref, df, log_n)
            penalty = math.exp(-((lh - lr) ** 2) / (2 * SIGMA ** 2))
            for k in range(N):
                val = 0.0
                rk = vr[k]
                for gram, w in vh[k].items():
                    r = rk.get(gram, 0.0)
                    val += min(w, r) * r
                if nh[k] != 0 and nr[k] != 0:
                    val /= nh[k] * nr[k]
                total[k] += val * penalty
        scores[i] = float(np.mean(total)) / len(refs) * 10.0
    return scores


class NlgStats:
    """Per-sample sufficient statistics of BLEU, ROUGE-L and CIDEr-D for tokenized captions."""

    def __init__(self, hyps: list[str], refs: list[list[str]]):
        if len(hyps) != len(refs):
            raise ValueError("one list of references per hypothesis")
        if any(len(r) == 0 for r in refs):
            raise ValueError("every hypothesis needs at least one reference")
        hyp_words = [h.split() for h in hyps]
        ref_words = [[r.split() for r in rs] for rs in refs]
        self.hyp_counts = [ngram_counts(w) for w in hyp_words]
        self.ref_counts = [[ngram_counts(w) for w in rs] for rs in ref_words]
        self.bleu = np.stack([bleu_stats(hc, len(hw), rc, [len(w) for w in rw])
                              for hc, hw, rc, rw in zip(self.hyp_counts, hyp_words, self.ref_counts, ref_words)]) \
            if hyps else np.zeros((0, 10))
        self.rouge = np.array([rouge_l(h, rs) for h, rs in zip(hyps, refs)], dtype=np.float64)
        self.cider = cider_scores(self.hyp_counts, self.ref_counts) if hyps else np.zeros(0)

    def corpus(self) -> dict[str, float]:
        sums = self.bleu.sum(axis=0)
        out = {f"BLEU-{k}": float(bleu_from_sums(sums, k)) for k in range(1, N + 1)}
        out["ROUGE-L"] = float(np.mean(self.rouge))
        out["CIDEr-D"] = float(np.mean(self.cider))
        return out


def tokenize_pairs(hyps: list[str], refs: list[list[str]], tokenizer: str = "ptb", info: dict | None = None):
    """Tokenized hypotheses and references. For ptb, all captions go through one
    ptb_tokenize_many call (the jar starts at most once); `info` receives which tokenizer produced
    how many captions."""
    if tokenizer != "ptb":
        tok = get_tokenizer(tokenizer)
        return [tok(h) for h in hyps], [[tok(r) for r in rs] for rs in refs]
    flat = list(hyps) + [r for rs in refs for r in rs]
    tokens, used = ptb_tokenize_many(flat)
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
