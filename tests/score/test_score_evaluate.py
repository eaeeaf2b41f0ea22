"""The evaluate-compatible modules load from a path with the hub switched off and agree with the library."""

import pytest

from pefomed.score import load_metric


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_vqa_metric_module():
    import evaluate

    metric = load_metric("vqa")
    assert isinstance(metric, evaluate.Metric)
    out = metric.compute(predictions=["Yes.", "the liver", "no"], references=["yes", "Liver", "yes"])
    assert out["accuracy"] == pytest.approx(2 / 3) and out["closed"] == pytest.approx(1 / 2)


def test_nlg_metric_module_equals_library():
    from pefomed.metrics.nlg import corpus_scores

    preds = ["No pleural effusion.", "Mild cardiomegaly is noted."]
    refs = [["No effusion or pneumothorax."], ["Cardiomegaly is mild.", "Mild cardiomegaly."]]
    out = load_metric("nlg").compute(predictions=preds, references=refs)
    assert out == pytest.approx(corpus_scores(preds, refs))


def test_clinical_metric_module_by_path():
    import evaluate

    from pefomed.score.evaluate_modules import path

    metric = evaluate.load(str(path("clinical")))
    out = metric.compute(predictions=["Mild cardiomegaly."], references=["Cardiomegaly."])
    assert out["f1_micro/5"] == 1.0
