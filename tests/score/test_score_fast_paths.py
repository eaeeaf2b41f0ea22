"""The shortcuts that make `pefomed score` fast change no number: resampled sums shared between
metrics (Bootstrap.sums remembers them per statistics array), per-cluster sums by bincount, one
BLAS thread for the thin products, the substring pre-checks of the PTB tokenizer's jar classes,
and CIDEr-D's idf computed once per n-gram."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from pefomed.metrics import nlg
from pefomed.metrics import tokenize as tok
from pefomed.score.stats import Bootstrap


def test_cluster_sums_equal_the_dense_weights():
    rng = np.random.default_rng(3)
    clusters = [f"img{k}" for k in rng.integers(0, 40, size=300)]
    stats = rng.integers(0, 7, size=(300, 5)).astype(np.float64)  # integer-valued: sums are exact
    boot = Bootstrap.make(300, 200, seed=1, clusters=clusters)
    assert np.array_equal(boot.sums(stats), boot.weights @ stats)
    # every row its own cluster: the same draws as the sample bootstrap, and the same sums
    alone = Bootstrap.make(300, 200, seed=1, clusters=[f"img{i}" for i in range(300)])
    plain = Bootstrap.make(300, 200, seed=1)
    assert alone._identity_clusters()
    assert np.array_equal(alone.sums(stats), plain.sums(stats))


def test_shared_statistics_are_resampled_once_and_stay_equal():
    rng = np.random.default_rng(0)
    stats = rng.random((500, 4))
    boot = Bootstrap.make(500, 100, seed=0)
    first = boot.sums(stats)
    assert boot.sums(stats) is first  # remembered for this very array
    assert not first.flags.writeable  # a caller cannot corrupt what other metrics will read
    copy = stats.copy()  # equal content, another array: computed again, equal
    again = boot.sums(copy)
    assert again is not first and np.array_equal(again, first)
    fresh = Bootstrap.make(500, 100, seed=0)
    assert np.allclose(fresh.sums(stats), fresh.weights @ stats, rtol=1e-12, atol=0)


def test_blas_runs_single_threaded_inside_the_products():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from pefomed.score.stats import _one_blas_thread

    np.ones((4, 4)) @ np.ones((4, 4))  # make sure numpy's BLAS is loaded
    with _one_blas_thread():
        inside = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert inside and all(n == 1 for n in inside)


def _needs_jar_without_prechecks(text: str) -> str | None:
    """needs_jar as it read before the substring pre-checks: every class's regex, in order."""
    line = text.replace("\n", " ").replace("\r", " ")
    for name, pattern in tok._JAR_CLASSES:
        if pattern.search(line):
            return name
    if tok._LETTER_DOT_LETTER.search(line):
        for chunk in line.split():
            if tok._LETTER_DOT_LETTER.search(chunk) and not tok._SAFE_DOTTED_CHUNK.match(chunk):
                return "glued abbreviation"
    return None


def test_jar_class_prechecks_change_no_class():
    corpus = Path(__file__).parent / "data" / "ptb_parity_corpus.jsonl"
    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(0)
    pieces = list("abnopPNOx09 .,;:!?'\"()[]-_/+=*&<>#$~@\\|{}^\t\n\r\x0b") + [
        "No.", "p.", "n't", "'s", "...", "--", "---", " no.", "e.g.", "3.5", "10-", "1/2", " A.", "cm", "\u2013",
        "\xa0", "Fig. 2", "can't", "__", "www.", "+3"]
    for _ in range(20_000):
        s = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 20)))
        texts.append(rng.choice(texts)[:rng.randint(0, 50)] + s if rng.random() < 0.3 else s)
    classes = [tok.needs_jar(t) for t in texts]
    assert classes == [_needs_jar_without_prechecks(t) for t in texts]
    assert len(set(classes)) >= 15  # the strings reach (nearly) every class, and None


def _cider_reference(hyp_counts, ref_counts):
    """CIDEr-D as pycocoevalcap's CiderScorer computes it, per occurrence (no shared idf)."""
    import math
    from collections import Counter

    df = Counter()
    for refs in ref_counts:
        df.update(set().union(*[c.keys() for c in refs]))
    log_n = math.log(float(len(ref_counts)))

    def vec(counts):
        v, norm, length = [{} for _ in range(4)], [0.0] * 4, 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            v[k][gram] = float(tf) * (log_n - math.log(max(1.0, df[gram])))
            norm[k] += v[k][gram] ** 2
            length += tf if k == 1 else 0
        return v, [math.sqrt(x) for x in norm], length

    out = []
    for hyp, refs in zip(hyp_counts, ref_counts):
        vh, nh, lh = vec(hyp)
        score = np.zeros(4)
        for ref in refs:
            vr, nr, lr = vec(ref)
            for k in range(4):
                val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
                if nh[k] and nr[k]:
                    val /= nh[k] * nr[k]
                score[k] += val * math.exp(-((lh - lr) ** 2) / (2 * 6.0 ** 2))
        out.append(float(np.mean(score)) / len(refs) * 10.0)
    return np.array(out)


def test_cider_with_idf_computed_once_equals_the_per_occurrence_formula():
    sys.path.insert(0, str(Path(__file__).parent))
    from corpus_gen import make_corpus

    hyps, refs = make_corpus(300, seed=5)
    th, tr = nlg.tokenize_pairs(hyps, refs, "whitespace")
    hc = [nlg.ngram_counts(h.split()) for h in th]
    rc = [[nlg.ngram_counts(r.split()) for r in rs] for rs in tr]
    assert any(len(rs) > 1 for rs in tr)
    np.testing.assert_allclose(nlg.cider_scores(hc, rc), _cider_reference(hc, rc), rtol=0, atol=1e-12)


def test_ngram_counts_keep_text_order():
    counts = nlg.ngram_counts("a b a b c".split())
    assert list(counts.items())[:6] == [(("a",), 2), (("b",), 2), (("c",), 1), (("a", "b"), 2), (("b", "a"), 1),
                                        (("b", "c"), 1)]
    assert counts[("a", "b", "a", "b")] == 1 and len(counts) == 11
    assert nlg.ngram_counts([]) == {}


def test_report_and_clinical_metrics_show_progress(capsys):
    from pefomed.score.clinical import clinical_metrics
    from pefomed.score.nlg import report_metrics
    from pefomed.score.rows import Row

    rows = [Row(id=f"r{i}", task="report", prediction=f"No effusion. Heart size is normal {i}.",
                reference="Small left pleural effusion.", images=[f"s{i}.png"], question="Describe.", line=i + 1)
            for i in range(40)]
    # (METEOR's bar, shown while its JVM scores, is left out: starting the JVM costs ~10 s here)
    report_metrics(rows, meteor=False, progress=True) + clinical_metrics(rows, progress=True)
    err = capsys.readouterr().err
    for title in ("report tokenization (PTB): 80/80", "BLEU / ROUGE-L: 40/40", "CIDEr-D: 40/40",
                  "clinical labels (predictions): 40/40", "clinical labels (references): 40/40"):
        assert title in err, err
    report_metrics(rows, meteor=False) + clinical_metrics(rows)  # nothing is printed without progress
    assert capsys.readouterr().err == ""
