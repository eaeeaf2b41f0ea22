"""The study report on synthetic predictions (no training, no inference): a several-seed row's
interval is a bootstrap over images within seeds (non-zero when the seeds agree), degenerate
predictions are flagged on every row and comparison they touch (json, md, html), and kept scores
are verified by their sha256 before reuse."""

from __future__ import annotations

import json
import random
import pytest

from pefomed.io import read_json

SEEDS = (0, 1, 2)
N_IMAGES, PER_IMAGE = 12, 4


@pytest.fixture(scope="module")
def study_with_preds(tmp_path_factory):
    """2 models (b's base is a) x (zero-shot, fine-tune lora) x 3 seeds, planned but never run:
    every cell's pred.jsonl is written here. b's zero-shot cell answers nothing (empty
    predictions); the fine-tuned seeds of each model answer identically."""
    import yaml

    from pefomed.records import Sample, write_split
    from pefomed.study.plan import plan_study
    from pefomed.study.spec import load_study

    tmp = tmp_path_factory.mktemp("report-study")
    samples = []
    for img in range(N_IMAGES):
        for q in range(PER_IMAGE):
            closed = q % 2 == 0
            samples.append(Sample(id=f"q{img}-{q}", task="vqa", images=[f"images/img{img}.png"],
                                  question=f"Is there a finding {q}?" if closed else f"What organ {q}?",
                                  answer=("yes" if (img + q) % 3 else "no") if closed else f"organ{img % 3}",
                                  answer_type="closed" if closed else "open"))
    data = tmp / "data"
    for split in ("train", "val", "test"):
        write_split(data, split, samples)
    (tmp / "b.yaml").write_text("model:\n  kind: tiny\n  tiny: {seed: 1}\n")
    study_file = tmp / "study.yaml"
    study_file.write_text(yaml.safe_dump({
        "name": "report-only",
        "models": [{"name": "a", "source": "tiny-demo"}, {"name": "b", "source": "b.yaml", "base": "a"}],
        "data": [{"name": "mini", "dir": str(data)}],
        "adaptations": [{"name": "zero-shot", "kind": "zero-shot"},
                        {"name": "ft", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"]}],
        "seeds": list(SEEDS),
        "comparisons": [{"kind": "base"}, {"kind": "adaptation", "reference": "zero-shot"}],
        "score": {"bootstrap": 200},
    }, sort_keys=False))
    study, root = load_study(study_file)
    out = tmp / "out"
    _, cells = plan_study(study, root, out)
    rng = random.Random(0)
    right = {m: [rng.random() < (0.6 if m == "a" else 0.8) for _ in samples] for m in ("a", "b")}
    for cell in cells:
        rows = []
        for s, ok in zip(samples, right[cell.model]):
            if cell.adaptation == "zero-shot":
                pred = "" if cell.model == "b" else ("yes" if s.answer_type == "closed" else "liver")
            else:  # every seed the same answers
                pred = s.answer if ok else "maybe"
            rows.append({"id": s.id, "task": "vqa", "question": s.question, "answer_type": s.answer_type,
                         "images": s.images, "prediction": pred, "reference": s.answer})
        folder = out / cell.folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pred.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return study, out, cells


@pytest.fixture(scope="module")
def report(study_with_preds):
    from pefomed.study.report import build_report

    study, out, cells = study_with_preds
    return build_report(study, out, cells)


def _row(report, model, adaptation):
    return next(r for r in report["rows"] if r["model"] == model and r["adaptation"] == adaptation)


def test_agreeing_seeds_get_a_bootstrap_interval_over_images(report, study_with_preds):
    _, out, _ = study_with_preds
    row = _row(report, "a", "ft")
    assert row["seeds"] == list(SEEDS)
    for metric in ("vqa/overall", "vqa/closed", "vqa/open"):
        e = row["metrics"][metric]
        assert e["std"] == 0 and e["t_ci_low"] == e["t_ci_high"] == e["value"]  # the old zero-width interval
        assert e["ci_low"] < e["value"] < e["ci_high"], (metric, e)
        assert e["interval"] == "bootstrap over images within seeds and over seeds"
    assert "over images within seeds and over seeds (3 seeds, 200 resamples" in row["intervals"]
    # the same width as one seed's percentile bootstrap over images (the seeds are copies)
    from pefomed.score.run import score_files

    _, _, cells = study_with_preds
    first = next(c for c in cells if c.id == row["cells"][0])
    one = score_files([out / first.folder / "pred.jsonl"], bootstrap=200, proportion_interval="bootstrap")
    assert (row["metrics"]["vqa/overall"]["ci_low"], row["metrics"]["vqa/overall"]["ci_high"]) == \
        (one["vqa"]["overall"]["ci_low"], one["vqa"]["overall"]["ci_high"])
    md = (out / "study.md").read_text()
    assert "intervals with several seeds: 95% percentile bootstrap over images within seeds and over seeds (3 seeds" in md
    # a one-seed row keeps `pefomed score`'s interval
    zero = _row(report, "a", "zero-shot")
    assert zero["seeds"] == [] or len(zero["seeds"]) <= 1
    assert "t_ci_low" not in zero["metrics"]["vqa/overall"]


def test_degenerate_sides_are_flagged_on_rows_and_comparisons(report, study_with_preds):
    _, out, _ = study_with_preds
    bad = _row(report, "b", "zero-shot")
    assert bad["degenerate"] and "48 empty predictions" in bad["degenerate"][0]["flags"]
    assert all(not r["degenerate"] for r in report["rows"] if r is not bad)
    touching = {(c["kind"], c["a"]["label"], c["b"]["label"]): c["degenerate"] for c in report["comparisons"]}
    assert set(touching[("base", "b · zero-shot", "a · zero-shot")]) == {"a"}
    assert set(touching[("adaptation", "b · ft (lora)", "b · zero-shot")]) == {"b"}
    assert touching[("base", "b · ft (lora)", "a · ft (lora)")] == {}
    assert touching[("adaptation", "a · ft (lora)", "a · zero-shot")] == {}
    summary = {(s["kind"], s["metric"]): s["with_degenerate_side"] for s in report["summary"]}
    assert summary[("base", "vqa/overall")] == 1 and summary[("adaptation", "vqa/overall")] == 1
    assert read_json(out / "study.json")["rows"] == report["rows"]
    md = (out / "study.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| b | zero-shot |"))
    assert "⚠ degenerate: 48 empty predictions" in line
    comp = next(x for x in md.splitlines() if x.startswith("| base | b · zero-shot | a · zero-shot | vqa/overall"))
    assert comp.endswith("| ⚠ degenerate A (48 empty predictions, all 48 predictions identical ('')) |")
    assert "## Degenerate outputs" in md
    page = (out / "study.html").read_text()
    assert page.count("<td>⚠ degenerate A (48 empty predictions") == 3  # one per metric row of the comparison
    assert "[⚠ degenerate A]" in page and "[⚠ degenerate B]" in page  # forest plot labels
    assert '<ul class="degenerate"><li>mini: b · zero-shot: 48 empty predictions, all 48 predictions identical' in page


def test_kept_scores_are_verified_and_a_tampered_one_is_recomputed(report, study_with_preds, monkeypatch, capsys):
    import pefomed.score.run as score_run
    from pefomed.study.report import CHECKSUM_SUFFIX, SCORES_DIR, build_report

    study, out, cells = study_with_preds
    kept = sorted((out / SCORES_DIR).glob("*.json"))
    assert len(kept) == 4 + 4  # one per row group and per comparison
    assert all(p.with_name(p.name + CHECKSUM_SUFFIX).is_file() for p in kept)
    calls = []
    real = score_run.score_files
    monkeypatch.setattr(score_run, "score_files", lambda *a, **k: calls.append(a) or real(*a, **k))
    capsys.readouterr()
    assert build_report(study, out, cells)["rows"] == report["rows"] and calls == []  # all kept, all verified
    # tamper one: it is recomputed with a warning naming it, never used; the others stay as kept
    target = next(p for p in kept if "vqa" in read_json(p) and "compare" not in read_json(p))
    scored = read_json(target)
    true_value = scored["vqa"]["overall"]["value"]
    scored["vqa"]["overall"]["value"] = 0.123456
    target.write_text(json.dumps(scored))
    again = build_report(study, out, cells)
    err = capsys.readouterr().err
    assert len(calls) == 1 and str(target) in err.replace("\n", "") and "recomputed" in err
    assert 0.123456 not in [r["metrics"]["vqa/overall"]["value"] for r in again["rows"]]
    assert read_json(target)["vqa"]["overall"]["value"] == true_value
    # a kept score without its checksum is not trusted either
    target.with_name(target.name + CHECKSUM_SUFFIX).unlink()
    build_report(study, out, cells)
    assert len(calls) == 2 and "no readable checksum" in capsys.readouterr().err
    assert build_report(study, out, cells)["rows"] == report["rows"] and len(calls) == 2
