"""The `vqa` section of METRICS.json: overall / closed / open accuracy and per-group breakdowns."""

from __future__ import annotations

import numpy as np

from pefomed.metrics import vqa
from pefomed.score.rows import Row
from pefomed.score.stats import MetricSpec, accuracy_spec

GROUP_KEYS = ("question_type", "organ", "modality")


def group_value(row: Row, key: str) -> str | None:
    """The row's group under `key`, case-folded: "OTHER" and "Other" are one group (sources spell
    organs and types inconsistently, and a split by spelling would halve both groups)."""
    value = row.meta.get(key)
    if value in (None, ""):
        return None
    value = " ".join(str(value).split())
    return value.casefold() or None


def group_labels(rows: list[Row], key: str) -> dict[str, str]:
    """{case-folded value: the first spelling met in `rows`}, in sorted order of the folded values."""
    first: dict[str, str] = {}
    for r in rows:
        folded = group_value(r, key)
        if folded is not None and r.task == "vqa":
            first.setdefault(folded, " ".join(str(r.meta[key]).split()))
    return {k: first[k] for k in sorted(first)}


def vqa_metrics(rows: list[Row], convention: str = "exact", groups: list[Row] | None = None) -> list[MetricSpec]:
    """Metric specs for the VQA rows among `rows` (other rows are masked out). `groups`: the rows
    (same ids, same order) whose task, answer_type and meta define the subsets, when they must be
    shared with another file (a paired comparison checks first that both files agree)."""
    groups = rows if groups is None else groups
    is_vqa = np.array([r.task == "vqa" for r in groups])
    if not is_vqa.any():
        return []
    preds = [r.prediction for r in rows]
    refs = [r.reference for r in rows]
    kinds = [vqa.answer_type_of(r.reference, r.answer_type) if r.task == "vqa" else None for r in groups]
    scores = vqa.per_sample_scores(preds, refs, kinds, convention) * is_vqa
    # llava-med-run-eval leaves some closed rows out of every denominator (its script does)
    is_vqa = is_vqa & vqa.counted_rows(preds, refs, kinds, convention)
    # llava-med open scores are recalls in [0, 1], not 0/1 hits: no McNemar for them.
    binary = convention in vqa.BINARY_CONVENTIONS  # per-sample 0/1 scores: proportion intervals, McNemar
    closed = is_vqa & np.array([k == "closed" for k in kinds])
    opened = is_vqa & np.array([k == "open" for k in kinds])
    specs = [accuracy_spec("vqa", "overall", scores, is_vqa, binary=binary)]
    if closed.any():
        # run-eval's denominators depend on the prediction, so two files' masks differ: no McNemar
        specs.append(accuracy_spec("vqa", "closed", scores, closed, binary=convention != "llava-med-run-eval"))
    if opened.any():
        specs.append(accuracy_spec("vqa", "open", scores, opened, binary=binary))
    # Closed yes/no: is the first yes/no word of the prediction the reference?
    yes_no = closed & np.array([vqa.normalize_answer(r.reference) in ("yes", "no") for r in rows])
    if yes_no.any():
        first = np.array([float(vqa.first_yes_no(r.prediction) == vqa.normalize_answer(r.reference))
                          for r in rows]) * yes_no
        specs.append(accuracy_spec("vqa", "closed_yesno_first_word", first, yes_no))
    for key in GROUP_KEYS:
        folded = [group_value(r, key) for r in groups]
        for value, label in group_labels(groups, key).items():
            mask = is_vqa & np.array([f == value for f in folded])
            specs.append(accuracy_spec("vqa", f"{key}/{label}", scores, mask, binary=binary))
    return specs
