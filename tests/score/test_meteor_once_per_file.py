"""METEOR's jar starts once per scored file (never per resample, per row or per side of a
metric), in the background while the other metrics are computed, and gives the numbers of a
plain one-JVM run."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from corpus_gen import make_corpus  # noqa: E402

pytest.importorskip("pycocoevalcap")
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")


def _write(path, hyps, refs):
    path.write_text("".join(json.dumps({"id": f"r{i}", "task": "report", "images": [f"s{i}.png"], "question": "",
                                        "prediction": h, "reference": r[0]}) + "\n"
                            for i, (h, r) in enumerate(zip(hyps, refs))))


@pytest.mark.slow
def test_one_jvm_per_file_in_a_comparison(tmp_path, monkeypatch):
    from pefomed.metrics.nlg import tokenize_pairs
    from pefomed.score import meteor
    from pefomed.score.run import score_files

    hyps, refs = make_corpus(60, seed=3)
    refs = [r[:1] for r in refs]
    _write(tmp_path / "a.jsonl", hyps, refs)
    _write(tmp_path / "b.jsonl", hyps[::-1], refs)
    launched = []
    real_popen = subprocess.Popen

    def counting_popen(cmd, *args, **kwargs):  # the real JVM, counted
        launched.append(cmd)
        return real_popen(cmd, *args, **kwargs)

    monkeypatch.setattr(meteor.subprocess, "Popen", counting_popen)
    metrics = score_files([tmp_path / "a.jsonl"], compare=tmp_path / "b.jsonl", bootstrap=200)
    jars = [cmd for cmd in launched if "meteor-1.5.jar" in cmd]
    assert len(jars) == 2  # a.jsonl and b.jsonl, with 200 resamples and a paired test each
    th, tr = tokenize_pairs(hyps, refs)
    assert metrics["report"]["METEOR"]["value"] == pytest.approx(meteor.meteor_scores(th, tr).corpus, abs=1e-12)


def test_an_unsubmitted_job_is_closed(monkeypatch):
    from pefomed.score.meteor import MeteorJob

    job = MeteorJob()
    result = job.result()  # e.g. tokenization failed before the captions were handed over
    assert not result.available and job._proc is not None and job._proc.poll() is not None
