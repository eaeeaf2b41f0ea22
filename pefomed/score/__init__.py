"""Scoring: VQA accuracy, report-generation NLG metrics, clinical efficacy, semantic similarity,
LLM judge, with bootstrap intervals and paired comparisons. See docs/metrics.md."""

from __future__ import annotations


def load_metric(name: str, **kwargs):
    """An `evaluate.Metric` instance for `name` ("vqa", "nlg", "clinical"), loaded from the module
    shipped in pefomed/score/evaluate_modules (no hub access)."""
    from pefomed.score.evaluate_modules import load

    return load(name, **kwargs)
