"""BLEU-1..4, ROUGE-L and CIDEr-D on 10,000 report pairs: pefomed vs pycocoevalcap, same run.

Both sides score the same already-tokenized captions, so the ratio is the metric computation
only (tokenization is timed separately). Usage: python benchmarks/bench_nlg.py [--n 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "score"))


def main() -> None:
    from corpus_gen import make_corpus
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from pefomed.metrics.nlg import NlgStats, tokenize_pairs
    from pefomed.score.stats import Bootstrap

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    hyps, refs = make_corpus(args.n, seed=1)
    t0 = time.perf_counter()
    th, tr = tokenize_pairs(hyps, refs, "ptb")
    t_tok = time.perf_counter() - t0
    gts = {i: r for i, r in enumerate(tr)}
    res = {i: [h] for i, h in enumerate(th)}

    t0 = time.perf_counter()
    coco = {"BLEU-4": Bleu(4).compute_score(gts, res, verbose=0)[0][3],
            "ROUGE-L": Rouge().compute_score(gts, res)[0], "CIDEr-D": Cider().compute_score(gts, res)[0]}
    t_coco = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = NlgStats(th, tr).corpus()
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    stats = NlgStats(th, tr)
    boot = Bootstrap.make(args.n, 1000, seed=0)
    boot.sums(stats.bleu)
    t_boot = time.perf_counter() - t0

    for key, value in coco.items():
        print(f"{key:8s} pycocoevalcap {value:.6f}  pefomed {ours[key]:.6f}")
    print(f"pairs: {args.n}; python PTB tokenization: {t_tok:.2f} s")
    print(f"pycocoevalcap BLEU+ROUGE-L+CIDEr: {t_coco:.2f} s")
    print(f"pefomed       BLEU+ROUGE-L+CIDEr: {t_ours:.2f} s")
    print(f"ratio pefomed / pycocoevalcap: {t_ours / t_coco:.3f}  ({t_coco / t_ours:.1f}x faster)")
    print(f"pefomed stats + 1,000 corpus-BLEU bootstrap resamples: {t_boot:.2f} s")


if __name__ == "__main__":
    main()
