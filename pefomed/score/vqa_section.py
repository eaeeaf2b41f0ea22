"""The `vqa` section of METRICS.json: overall / closed / open accuracy and per-group breakdowns."""

from __future__ import annotations

import numpy as np

from pefomed.score import vqa
from pefomed.score.rows import Row
from pefomed.score.stats import MetricSpec, accuracy_spec

GROUP_KEYS = ("question_type", "organ", "modality")


def vqa_metrics(rows: list[Row], convention: str = "exact") -> list[MetricSpec]:
    """Metric specs for the VQA rows among `rows` (other rows are masked out)."""
    is_vqa = np.array([r.task == "vqa" for r in rows])
    if not is_vqa.any():
        return []
    preds = [r.prediction for r in rows]
    refs = [r.reference for r in rows]
    kinds = [vqa.answer_type_of(r.reference, r.answer_type) if r.task == "vqa" else None for r in rows]
    scores = vqa.per_sample_scores(preds, refs, kinds, convention) * is_vqa
    # llava-med open scores are recalls in [0, 1], not 0/1 hits: no McNemar for them.
    binary = convention == "exact"
    closed = is_vqa & np.array([k == "closed" for k in kinds])
    opened = is_vqa & np.array([k == "open" for k in kinds])
    specs = [accuracy_spec("vqa", "overall", scores, is_vqa, binary=binary)]
    if closed.any():
        specs.append(accuracy_spec("vqa", "closed", scores, closed))
    if opened.any():
        specs.append(accuracy_spec("vqa", "open", scores, opened, binary=binary))
    # Closed yes/no: is the first yes/no word of the prediction the reference?
    yes_no = closed & np.array([vqa.normalize_answer(r.reference) in ("yes", "no") for r in rows])
    if yes_no.any():
        first = np.array([float(vqa.first_yes_no(r.prediction) == vqa.normalize_answer(r.reference))
                          for r in rows]) * yes_no
        specs.append(accuracy_spec("vqa", "closed_yesno_first_word", first, yes_no))
    for key in GROUP_KEYS:
        values = sorted({str(r.meta[key]) for r, v in zip(rows, is_vqa) if v and r.meta.get(key) not in (None, "")})
        for value in values:
            mask = is_vqa & np.array([str(r.meta.get(key)) == value for r in rows])
            specs.append(accuracy_spec("vqa", f"{key}/{value}", scores, mask, binary=binary))
    return specs
