"""Paired comparison verdicts on constructed pairs with known differences; mean +- std across runs."""

import json

import numpy as np
import pytest

from pefomed.errors import UserError
from pefomed.score.run import score_files
from pefomed.score.stats import Bootstrap, mcnemar_exact, paired_difference, mean_stats


def _write(path, answers, refs):
    rows = [{"id": f"q{i}", "images": [], "question": "?", "prediction": a, "reference": r,
             "answer_type": "closed", "task": "vqa"} for i, (a, r) in enumerate(zip(answers, refs))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_verdicts_win_tie_loss(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    refs = list(rng.choice(["yes", "no"], n))
    flip = {"yes": "no", "no": "yes"}
    good = [r if rng.random() < 0.9 else flip[r] for r in refs]   # ~90 %
    bad = [r if rng.random() < 0.6 else flip[r] for r in refs]    # ~60 %
    a = _write(tmp_path / "a.jsonl", good, refs)
    b = _write(tmp_path / "b.jsonl", bad, refs)
    win = score_files([a], compare=b, bootstrap=500, seed=0)["compare"]["sections"]["vqa"]["overall"]
    assert win["verdict"] == "win" and win["value"] > 0.2 and win["mcnemar"]["p_value"] < 1e-6
    assert win["ci_low"] > 0
    loss = score_files([b], compare=a, bootstrap=500, seed=0)["compare"]["sections"]["vqa"]["overall"]
    assert loss["verdict"] == "loss"
    # one answer differs out of 300: no detectable difference
    almost = list(good)
    almost[0] = flip[almost[0]]
    c = _write(tmp_path / "c.jsonl", almost, refs)
    tie = score_files([a], compare=c, bootstrap=500, seed=0)["compare"]["sections"]["vqa"]["overall"]
    assert tie["verdict"] == "tie" and tie["mcnemar"]["p_value"] == 1.0


def test_mcnemar_exact_value():
    # 10 discordant pairs, 9 favour A: two-sided binomial p = 2 * P(X <= 1 | 10, .5) = 22/1024
    a = np.array([1] * 9 + [0] + [1] * 5)
    b = np.array([0] * 9 + [1] + [1] * 5)
    assert mcnemar_exact(a, b)["p_value"] == pytest.approx(22 / 1024)


def test_paired_bootstrap_on_a_continuous_metric():
    rng = np.random.default_rng(1)
    base = rng.random(400)
    boot = Bootstrap.make(400, 400, seed=2)
    sa, fn = mean_stats(base + 0.05)
    sb, _ = mean_stats(base)
    res = paired_difference(sa, sb, fn, boot)
    assert res["value"] == pytest.approx(0.05) and res["verdict"] == "win"
    # paired: the per-sample difference is constant, so the interval collapses onto it
    assert res["ci_low"] == pytest.approx(0.05) and res["ci_high"] == pytest.approx(0.05)


def test_different_ids_are_listed(tmp_path):
    a = _write(tmp_path / "a.jsonl", ["yes", "no"], ["yes", "no"])
    b = tmp_path / "b.jsonl"
    b.write_text(json.dumps({"id": "q0", "prediction": "yes", "reference": "yes", "task": "vqa"}) + "\n" +
                 json.dumps({"id": "zz", "prediction": "yes", "reference": "yes", "task": "vqa"}) + "\n")
    with pytest.raises(UserError, match=r"only in .*a.jsonl: q1; only in .*b.jsonl: zz"):
        score_files([a], compare=b, bootstrap=10)


def test_mean_std_across_runs(tmp_path):
    refs = ["yes"] * 10
    runs = [_write(tmp_path / f"s{k}.jsonl", ["yes"] * c + ["no"] * (10 - c), refs) for k, c in enumerate((5, 7, 9))]
    m = score_files(runs, bootstrap=50, out=tmp_path / "M.json")
    overall = m["vqa"]["overall"]
    assert overall["value"] == pytest.approx(0.7)
    assert overall["std"] == pytest.approx(0.2)
    assert overall["n_runs"] == 3 and overall["ci_low"] < 0.7 < overall["ci_high"]
    assert len(m["runs"]) == 3
    assert (tmp_path / "report" / "report.md").is_file()


def test_forest_plot_in_report(tmp_path):
    a = _write(tmp_path / "a.jsonl", ["yes", "no", "yes"], ["yes", "no", "no"])
    b = _write(tmp_path / "b.jsonl", ["no", "no", "yes"], ["yes", "no", "no"])
    score_files([a], compare=b, bootstrap=20, report=tmp_path / "rep")
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Forest plot" in html and html.count("<svg") >= 2
