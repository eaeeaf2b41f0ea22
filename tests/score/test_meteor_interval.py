"""METEOR reports one statistic, the jar's corpus score (what pycocoevalcap reports), with the
bootstrap interval of that same statistic, recomputed from resampled sums of the jar's per-segment
statistics."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from corpus_gen import make_corpus  # noqa: E402

pytest.importorskip("pycocoevalcap")
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")


def _coco_meteor(hyps, refs):
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor().compute_score({i: list(r) for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)})


def test_corpus_score_from_summed_stats_equals_the_jar():
    from pefomed.score.meteor import aggregable, meteor_scores, score_from_sums
    from pefomed.metrics.nlg import tokenize_pairs

    hyps, refs = tokenize_pairs(*make_corpus(250, seed=7))
    result = meteor_scores(hyps, refs)
    assert result.available and result.stats.shape == (250, 23)
    assert float(score_from_sums(aggregable(result.stats).sum(0))) == pytest.approx(result.corpus, abs=1e-6)
    # the same formula on one segment's stats is that segment's score
    assert score_from_sums(result.stats) == pytest.approx(result.segments, abs=1e-6)
    # and the corpus score is not the segment mean on this corpus (they are different statistics)
    assert abs(np.mean(result.segments) - result.corpus) > 1e-3


def _rows():
    # Short perfect matches (segment score 1, little weight in the corpus sums) and long poor
    # matches (most of the corpus weight): the segment mean is far above the corpus score.
    rows = []
    for i in range(20):
        rows.append({"id": f"s{i}", "prediction": "heart size normal", "reference": "Heart size normal."})
    filler = ("the patient has a chest tube on the right with stable position and lines unchanged "
              "and there is no change in the appearance of the mediastinum since the prior study")
    for i in range(20):
        rows.append({"id": f"l{i}", "prediction": f"{filler} item {i}",
                     "reference": f"Large left pleural effusion with adjacent atelectasis, finding {i}."})
    for r in rows:
        r.update(task="report", images=[], question="")
    return rows


def test_value_is_pycocoevalcap_and_inside_its_own_interval(tmp_path):
    from pefomed.score.run import score_files
    from pefomed.metrics.tokenize import ptb_tokenize

    rows = _rows()
    path = tmp_path / "PRED.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    m = score_files([path], bootstrap=300, seed=0, clinical=False)
    entry = m["report"]["METEOR"]
    hyps = [ptb_tokenize(r["prediction"]) for r in rows]
    refs = [[ptb_tokenize(r["reference"])] for r in rows]
    coco_corpus, coco_segments = _coco_meteor(hyps, refs)
    assert entry["value"] == pytest.approx(coco_corpus, abs=1e-6)
    assert entry["statistic"] == "corpus"
    assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
    # The data are built so that the old interval (of the segment mean) would miss the value.
    segment_mean = float(np.mean(coco_segments))
    assert segment_mean - coco_corpus > 0.2
    assert not entry["ci_low"] <= segment_mean <= entry["ci_high"]
    assert "resampled sums" in m["settings"]["report_metrics"]["meteor_interval"]
