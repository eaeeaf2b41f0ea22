"""Report metrics equal pycocoevalcap's on a 1,000-pair corpus (tokenizer, BLEU, ROUGE-L, CIDEr-D,
METEOR), plus the bit-parallel LCS against the textbook table."""

import random
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from corpus_gen import make_corpus  # noqa: E402

from pefomed.metrics.nlg import NlgStats, lcs_length, tokenize_pairs  # noqa: E402
from pefomed.metrics.tokenize import ptb_tokenize_many  # noqa: E402

pycoco = pytest.importorskip("pycocoevalcap")
java = pytest.mark.skipif(subprocess.run(["which", "java"], capture_output=True).returncode != 0, reason="needs Java")


def _table_lcs(a, b):
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1][j], t[i][j - 1])
    return t[-1][-1]


def test_bit_parallel_lcs_equals_table():
    rng = random.Random(3)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        assert lcs_length(a, b) == _table_lcs(a, b)


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(1000, seed=0)


@pytest.fixture(scope="module")
def coco_tokenized(corpus):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    hyps, refs = corpus
    gts = {i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)}
    res = {i: [{"caption": h}] for i, h in enumerate(hyps)}
    tok = PTBTokenizer()
    return tok.tokenize(gts), tok.tokenize(res)


@java
def test_ptb_tokenizer_matches_the_jar(corpus, coco_tokenized):
    hyps, refs = corpus
    gts, res = coco_tokenized
    ours, _ = ptb_tokenize_many(hyps)
    for i, h in enumerate(hyps):
        assert ours[i] == res[i][0], h
    flat, _ = ptb_tokenize_many([r for rs in refs for r in rs])
    pos = 0
    for i, rs in enumerate(refs):
        assert flat[pos:pos + len(rs)] == gts[i]
        pos += len(rs)


@java
def test_bleu_rouge_cider_parity(corpus, coco_tokenized):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = coco_tokenized
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    hyps, refs = corpus
    ours = NlgStats(*tokenize_pairs(hyps, refs, "ptb")).corpus()
    for k in range(4):
        assert ours[f"BLEU-{k + 1}"] == pytest.approx(bleu[k], abs=1e-6)
    assert ours["ROUGE-L"] == pytest.approx(rouge, abs=1e-6)
    assert ours["CIDEr-D"] == pytest.approx(cider, abs=1e-6)
    assert 0.05 < ours["BLEU-4"] < 0.9  # the corpus is neither trivial nor disjoint


@java
@pytest.mark.slow
def test_meteor_parity(corpus, coco_tokenized):
    from pycocoevalcap.meteor.meteor import Meteor

    from pefomed.score.meteor import meteor_scores

    gts, res = coco_tokenized
    n = 300  # METEOR is the slow one; 300 pairs keep the test < 1 min on 2 cores
    sub_g = {i: gts[i] for i in range(n)}
    sub_r = {i: res[i] for i in range(n)}
    ref_score, ref_segments = Meteor().compute_score(sub_g, sub_r)
    ours = meteor_scores([sub_r[i][0] for i in range(n)], [sub_g[i] for i in range(n)])
    assert ours.available
    assert ours.corpus == pytest.approx(ref_score, abs=1e-6)
    assert ours.segments == pytest.approx(ref_segments, abs=1e-6)


def test_meteor_unavailable_without_java(monkeypatch, tmp_path):
    from pefomed.score import meteor

    monkeypatch.setattr(meteor.shutil, "which", lambda name: None)
    result = meteor.meteor_scores(["a"], [["a"]])
    assert not result.available and "Java" in result.reason
