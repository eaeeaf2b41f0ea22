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


def _rows(answers, refs, **extra):
    return [{"id": f"q{i}", "images": [f"img{i}.png"], "question": "?", "prediction": a, "reference": r,
             "answer_type": "closed", "task": "vqa", **extra} for i, (a, r) in enumerate(zip(answers, refs))]


def _dump(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_every_verdict_names_its_test_and_the_group_n(tmp_path):
    refs = ["yes", "no"] * 50
    good = list(refs)
    bad = [("no" if r == "yes" else "yes") if i % 3 == 0 else r for i, r in enumerate(refs)]
    rows_a, rows_b = _rows(good, refs), _rows(bad, refs)
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
        ra["meta"] = rb["meta"] = {"organ": "CHEST" if i < 30 else "ABD"}
    a, b = _dump(tmp_path / "a.jsonl", rows_a), _dump(tmp_path / "b.jsonl", rows_b)
    comp = score_files([a], compare=b, bootstrap=200)["compare"]
    chest = comp["sections"]["vqa"]["organ/CHEST"]
    assert chest["n"] == 30 and comp["sections"]["vqa"]["overall"]["n"] == 100
    assert chest["test"] == "exact McNemar" and chest["p_value"] == chest["mcnemar"]["p_value"]
    assert "exact McNemar" in comp["tests"]


def test_mcnemar_tie_beside_an_interval_excluding_zero_is_explained(tmp_path):
    refs = ["yes"] * 100
    good = ["yes"] * 100
    bad = ["no"] * 5 + ["yes"] * 95  # 5 discordant pairs, all for A: McNemar p = 2/32 = .0625
    a, b = _dump(tmp_path / "a.jsonl", _rows(good, refs)), _dump(tmp_path / "b.jsonl", _rows(bad, refs))
    e = score_files([a], compare=b, bootstrap=1000, seed=0)["compare"]["sections"]["vqa"]["overall"]
    assert e["ci_low"] > 0 and e["verdict"] == "tie" and e["test"] == "exact McNemar"
    assert e["p_value"] == pytest.approx(0.0625) and "bootstrap interval alone would say win" in e["note"]


def test_bootstrap_zero_gives_no_bootstrap_verdict(tmp_path):
    refs = ["liver", "yes", "no", "lung"] * 10
    rows_a, rows_b = _rows(refs, refs), _rows(["kidney", "yes", "yes", "lung"] * 10, refs)
    for ra, rb in zip(rows_a, rows_b):
        ra["answer_type"] = rb["answer_type"] = "closed" if ra["reference"] in ("yes", "no") else "open"
    a, b = _dump(tmp_path / "a.jsonl", rows_a), _dump(tmp_path / "b.jsonl", rows_b)
    comp = score_files([a], compare=b, bootstrap=0, vqa_convention="llava-med")["compare"]["sections"]["vqa"]
    # llava-med open scores are recalls, not 0/1: without resamples there is no test to decide
    assert comp["open"]["verdict"] is None and comp["open"]["test"] is None and comp["open"]["ci_low"] is None
    assert "--bootstrap 0" in comp["open"]["no_verdict"]
    # closed questions are 0/1 and one per image: the exact McNemar test still decides, and says so
    assert comp["closed"]["test"] == "exact McNemar" and comp["closed"]["verdict"] in ("win", "tie")


def test_questions_sharing_an_image_are_not_decided_by_mcnemar(tmp_path):
    rng = np.random.default_rng(3)
    refs = list(rng.choice(["yes", "no"], 120))
    flip = {"yes": "no", "no": "yes"}
    rows_a = _rows(refs, refs)
    rows_b = _rows([flip[r] if rng.random() < 0.4 else r for r in refs], refs)
    for ra, rb in zip(rows_a, rows_b):
        ra["images"] = rb["images"] = [f"img{int(ra['id'][1:]) // 4}.png"]
    a, b = _dump(tmp_path / "a.jsonl", rows_a), _dump(tmp_path / "b.jsonl", rows_b)
    m = score_files([a], compare=b, bootstrap=300)
    e = m["compare"]["sections"]["vqa"]["overall"]
    assert e["test"] == "paired bootstrap over images" and e["verdict"] == "win"
    assert "not used" in e["mcnemar"]["note"] and m["compare"]["resample_unit"] == "image"
    sample = score_files([a], compare=b, bootstrap=300, resample_unit="sample")
    assert sample["compare"]["sections"]["vqa"]["overall"]["test"] == "exact McNemar"


def test_several_seeds_per_side(tmp_path):
    rng = np.random.default_rng(5)
    refs = list(rng.choice(["yes", "no"], 200))
    flip = {"yes": "no", "no": "yes"}

    def run(p, name):
        return _dump(tmp_path / name, _rows([r if rng.random() < p else flip[r] for r in refs], refs))
    a = [run(0.9, "a0.jsonl"), run(0.85, "a1.jsonl")]
    b = [run(0.6, "b0.jsonl"), run(0.65, "b1.jsonl"), run(0.62, "b2.jsonl")]
    m = score_files(a, compare=b, bootstrap=300, out=tmp_path / "M.json")
    comp = m["compare"]
    e = comp["sections"]["vqa"]["overall"]
    assert comp["seeds"] == {"a": 2, "b": 3} and e["test"] == "paired bootstrap over images and seeds"
    assert e["verdict"] == "win" and "mcnemar" not in e
    assert e["a"] == pytest.approx(m["vqa"]["overall"]["value"])  # the mean over A's seeds
    assert comp["b_metrics"]["vqa"]["overall"]["n_runs"] == 3
    assert [f["side"] for f in m["settings"]["files"]] == ["a", "a", "b", "b", "b"]


def test_subgroups_must_agree_between_files(tmp_path):
    refs = ["yes", "no", "yes"]
    rows_a = _rows(refs, refs, meta={"organ": "CHEST"})
    rows_b = _rows(refs, refs, meta={"organ": "CHEST"})
    rows_b[1]["meta"] = {"organ": "ABD"}
    a, b = _dump(tmp_path / "a.jsonl", rows_a), _dump(tmp_path / "b.jsonl", rows_b)
    with pytest.raises(UserError, match=r"id 'q1' has meta.organ 'chest' in .*a.jsonl:2 but 'abd' in .*b.jsonl:2"):
        score_files([a], compare=b, bootstrap=10)
    rows_b[1]["meta"] = {"organ": "Chest"}  # case only: the same group
    rows_b[2]["answer_type"] = "open"
    _dump(b, rows_b)
    with pytest.raises(UserError, match=r"id 'q2' has answer type 'closed' .* but 'open'"):
        score_files([a], compare=b, bootstrap=10)


def test_group_spellings_merge_case_insensitively(tmp_path):
    refs = ["yes"] * 4
    rows = _rows(refs, refs)
    for r, organ in zip(rows, ["OTHER", "Other", "other ", "CHEST"]):
        r["meta"] = {"organ": organ}
    vqa = score_files([_dump(tmp_path / "p.jsonl", rows)], bootstrap=0)["vqa"]
    assert vqa["organ/OTHER"]["n"] == 3 and "organ/Other" not in vqa and vqa["organ/CHEST"]["n"] == 1


def test_degenerate_outputs_are_flagged(tmp_path):
    refs = ["yes", "no", "liver", "lung"] * 5
    a = _dump(tmp_path / "a.jsonl", _rows(refs, refs))
    b = _dump(tmp_path / "b.jsonl", _rows([""] * 14 + ["..."] + ["yes"] * 5, refs))
    m = score_files([a], compare=b, bootstrap=50, report=tmp_path / "rep")
    flags = {o["side"]: o for o in m["outputs"]}
    assert flags["a"]["flags"] == [] and flags["b"]["empty"] == 14 and flags["b"]["punctuation_only"] == 1
    assert flags["b"]["flags"] == ["14 empty predictions", "1 punctuation-only prediction"]
    same = _dump(tmp_path / "c.jsonl", _rows(["yes"] * 20, refs))
    assert score_files([same], bootstrap=0)["outputs"][0]["flags"] == ["all 20 predictions identical ('yes')"]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "14 empty predictions" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "overall · A" in html and "overall · B" in html  # both sides charted


def test_across_runs_t_interval_follows_alpha(tmp_path):
    from scipy.stats import t

    refs = ["yes"] * 10
    runs = [_write(tmp_path / f"s{k}.jsonl", ["yes"] * c + ["no"] * (10 - c), refs) for k, c in enumerate((5, 7, 9))]
    wide = score_files(runs, bootstrap=0, alpha=0.05)["vqa"]["overall"]
    narrow = score_files(runs, bootstrap=0, alpha=0.2)["vqa"]["overall"]
    ratio = (narrow["ci_high"] - narrow["value"]) / (wide["ci_high"] - wide["value"])
    assert ratio == pytest.approx(t.ppf(0.9, 2) / t.ppf(0.975, 2))


def test_report_task_settings_and_cider_range(tmp_path):
    rows = [{"id": f"r{i}", "images": [f"x{i}.png"], "question": "", "task": "report",
             "prediction": "no acute cardiopulmonary process .", "reference": ref}
            for i, ref in enumerate(["no acute cardiopulmonary process .", "small left effusion .",
                                     "no acute process .", "heart size normal ."])]
    m = score_files([_dump(tmp_path / "p.jsonl", rows)], bootstrap=20, meteor=False, report=tmp_path / "rep")
    settings = m["settings"]
    assert "convention" not in settings and "normalization" not in settings
    assert settings["tokenizer"]["name"] == "ptb" and settings["clinical_uncertain"] == "negative"
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "report metrics in [0, 10]" in html and "report metrics in [0, 1]" in html
    assert "{" not in (tmp_path / "rep" / "report.md").read_text().split("## Metrics")[0]  # no dict printed
