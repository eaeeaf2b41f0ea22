"""The llava-med conventions are LLaVA-Med's arithmetic (microsoft/LLaVA-Med, llava/eval/):
glossary.normalize_word, calculate_f1score's recall, and the closed rules of run_eval_batch.py
(`llava-med`) and run_eval.py (`llava-med-run-eval`). Expected values are computed by hand from
those scripts' formulas."""

import json

import numpy as np
import pytest

from pefomed.score import conventions
from pefomed.metrics.vqa import (CONVENTIONS, counted_rows, llava_closed, llava_closed_run_eval, llava_normalize,
                               llava_open_recall, per_sample_scores)


@pytest.mark.parametrize("raw,expected", [
    ("The liver.", "liver"),                   # lowercase, article dropped, final period deleted
    ("Two", "2"),                              # number word
    ("none", "0"),                             # glossary maps "none" to 0
    ("left-sided", "left sided"),              # '-' touches no space: replaced by a space
    ("left - sided", "left sided"),            # '-' touches a space: deleted
    ("yes, there is", "yes there is"),
    ("1,000 cells (approx)", "1000 cells approx"),  # a digit,digit comma: every mark deleted, no spaces
    ("x-ray", "x ray"),                        # no x-ray rule in LLaVA-Med (pefomed's exact has one)
    ("2.5 cm.", "2.5 cm"),                     # decimal kept
    ("dont know", "don't know"),
    ("shes", "shes"),                          # not in glossary.py's contraction table
    ("a: b", "a: b"),                          # ':' is not in its list, so "a:" stays a word, not an article
    ("." * 33 + "x", ".x"),                    # re.UNICODE passed as count: 32 periods at most
])
def test_normalize_word(raw, expected):
    assert llava_normalize(raw) == expected


@pytest.mark.parametrize("pred,ref,recall", [
    ("liver", "the liver", 1.0),               # articles go on both sides
    ("the liver", "liver", 1.0),
    ("2", "two", 1.0),                         # number words on both sides
    ("right lung", "left lung", 1 / 2),        # tp = 1 (lung), fn = 1 (left)
    ("lung lung lung", "lung nodule", 3 / 4),  # tp counts the prediction's 3 occurrences, fn = 1
    ("lung", "lung lung nodule", 1 / 2),       # tp = 1, fn = 1: repeated reference words do not help
    ("", "liver", 0.0),
    ("kidney", "liver", 0.0),
])
def test_open_recall(pred, ref, recall):
    assert llava_open_recall(pred, ref) == pytest.approx(recall)


def test_closed_rules_of_the_two_scripts():
    # run_eval_batch.py: substring of the normalized strings
    assert llava_closed("Normal.", "no") == 1.0
    assert llava_closed("Yes, there is", "yes") == 1.0
    assert llava_closed("maybe", "yes") == 0.0
    # run_eval.py: (hit, counted)
    assert llava_closed_run_eval("yes", "yes") == (1.0, True)
    assert llava_closed_run_eval("yes", "no") == (0.0, False)      # has yes/no, misses: not counted
    assert llava_closed_run_eval("maybe", "yes") == (0.0, True)    # no yes/no: a counted miss
    assert llava_closed_run_eval("unknown", "no") == (1.0, True)   # "no" is a substring of "unknown"


def _accuracy(preds, refs, kinds, convention, kind):
    scores = per_sample_scores(preds, refs, kinds, convention)
    keep = counted_rows(preds, refs, kinds, convention) & np.array([k == kind for k in kinds])
    return float(scores[keep].sum() / keep.sum())


def test_closed_accuracy_differs_between_the_scripts():
    preds = ["yes", "yes", "maybe", "unknown", "liver", "the kidneys"]
    refs = ["yes", "no", "yes", "no", "the liver", "kidney"]
    kinds = ["closed"] * 4 + ["open"] * 2
    # run_eval_batch.py: hits 1, 0, 0, 1 over 4 closed rows
    assert _accuracy(preds, refs, kinds, "llava-med", "closed") == pytest.approx(2 / 4)
    # run_eval.py: row 2 is dropped: hits 1, 0, 1 over 3
    assert _accuracy(preds, refs, kinds, "llava-med-run-eval", "closed") == pytest.approx(2 / 3)
    # open recall is the same in both: liver 1, "kidneys" vs "kidney" 0
    for convention in ("llava-med", "llava-med-run-eval"):
        assert _accuracy(preds, refs, kinds, convention, "open") == pytest.approx(1 / 2)
    assert counted_rows(preds, refs, kinds, "llava-med").all()
    assert counted_rows(preds, refs, kinds, "exact").all()


def test_conventions_are_named_everywhere():
    assert {"exact", "llava-med", "llava-med-run-eval"} <= set(CONVENTIONS)
    assert "run_eval_batch.py" in conventions.normalization("llava-med")
    assert "run_eval.py" in conventions.normalization("llava-med-run-eval")
    with pytest.raises(ValueError, match="unknown VQA convention"):
        per_sample_scores(["a"], ["a"], ["open"], "llava")


def test_llava_med_convention_end_to_end(tmp_path):
    from pefomed.score.run import score_files

    rows = [{"id": f"q{i}", "images": [], "question": "q?", "prediction": p, "reference": r, "answer_type": k,
             "task": "vqa"}
            for i, (p, r, k) in enumerate([("Normal.", "no", "closed"), ("maybe", "yes", "closed"),
                                           ("the the lung lung", "lung nodule", "open")])]
    path = tmp_path / "PRED.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    m = score_files([path], bootstrap=0, vqa_convention="llava-med")
    assert m["vqa"]["closed"]["value"] == pytest.approx(1 / 2)
    assert m["vqa"]["open"]["value"] == pytest.approx(2 / 3)  # tp = 2 (lung twice), fn = 1 (nodule)
    assert "run_eval_batch.py" in m["settings"]["normalization"]


def test_llava_med_run_eval_convention_end_to_end(tmp_path):
    from pefomed.score.run import score_files

    data = [("yes", "yes"), ("yes", "no"), ("maybe", "yes"), ("unknown", "no")]
    rows = [{"id": f"q{i}", "images": [], "question": "q?", "prediction": p, "reference": r, "answer_type": "closed",
             "task": "vqa"} for i, (p, r) in enumerate(data)]
    path = tmp_path / "PRED.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run_eval = score_files([path], bootstrap=0, vqa_convention="llava-med-run-eval")["vqa"]["closed"]
    batch = score_files([path], bootstrap=0, vqa_convention="llava-med")["vqa"]["closed"]
    assert (run_eval["value"], run_eval["n"]) == (pytest.approx(2 / 3), 3)  # q1 left out, as run_eval.py does
    assert (batch["value"], batch["n"]) == (pytest.approx(2 / 4), 4)
