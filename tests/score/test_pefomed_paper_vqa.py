"""The `pefomed-paper` VQA convention against PeFoMed's released scorer, string for string.

tests/score/data/pefomed_paper_vqa_corpus.jsonl holds 2,514 strings with the output of
MedVQAEval.preprocess_answer (github.com/jinlHe/PeFoMed, pefomed/common/medvqa_tools/vqa_eval.py)
for each, computed once by running the released function: every mark of its punctuation list and
of the marks it leaves alone, each next to a space / inside a word / beside a digit,digit comma;
every number word, article and contraction key (in three casings); "x ray" spellings; newline,
tab and non-ASCII input; and 1,500 seeded random strings over the same pieces."""

import json
from pathlib import Path

import pytest

from pefomed.metrics.vqa import (BINARY_CONVENTIONS, CONVENTIONS, exact_match, normalize_answer,
                                 pefomed_paper_match, pefomed_paper_normalize, per_sample_scores)
from pefomed.score.conventions import normalization

CORPUS = Path(__file__).parent / "data" / "pefomed_paper_vqa_corpus.jsonl"


def test_released_preprocess_answer_string_for_string():
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2514
    wrong = [(r["text"], r["expected"], pefomed_paper_normalize(r["text"])) for r in rows
             if pefomed_paper_normalize(r["text"]) != r["expected"]]
    assert not wrong, wrong[:10]


@pytest.mark.parametrize("raw,expected", [
    ("5%", "5%"),                                   # '%' is not in the released punctuation list
    ("~3 cm", "~3 cm"),                             # nor is '~'
    ("jaundice,weight", "jaundice weight"),         # a comma inside a word becomes a space...
    ("fever, jaundice,weight", "fever jaundiceweight"),  # ...unless a comma touches a space elsewhere
    ("a,b 1,2", "ab 12"),                           # a digit,digit comma anywhere deletes every mark
    ("max ray", "maxray"),                          # "x ray" -> "xray" is a substring replacement
    ("X-Ray", "xray"),
    ("Dont", "don't"),                              # lowercased before the contraction table
    ("None", "0"),
    ("2.5 cm.", "2.5 cm"),
])
def test_documented_quirks(raw, expected):
    assert pefomed_paper_normalize(raw) == expected


def test_where_exact_and_the_paper_disagree():
    # the example: "5" against a reference of "5%" is right for pefomed's `exact`, wrong
    # for the paper's scorer
    assert exact_match("5", "5%") and not pefomed_paper_match("5", "5%")
    assert normalize_answer("fever, jaundice,weight") == "fever jaundice weight"
    scores = per_sample_scores(["5", "yes", "fever jaundice weight"], ["5%", "Yes.", "fever, jaundice,weight"],
                               ["open", "closed", "open"], "pefomed-paper")
    assert scores.tolist() == [0.0, 1.0, 0.0]
    assert per_sample_scores(["5"], ["5%"], ["open"], "exact").tolist() == [1.0]


def test_convention_is_listed_and_named():
    assert "pefomed-paper" in CONVENTIONS and "pefomed-paper" in BINARY_CONVENTIONS
    assert "MedVQAEval.preprocess_answer" in normalization("pefomed-paper")
    assert normalization("exact").startswith("exact (pefomed")
