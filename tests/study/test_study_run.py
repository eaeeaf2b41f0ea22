"""A whole study on tiny models: runs to its report, survives a kill, equals the cells run by hand,
and runs a cell through submitit's local executor. Prompt selection never looks at the test split."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pefomed.io import read_json
from pefomed.study.plan import DONE, plan_study
from pefomed.study.spec import load_study

sys.path.insert(0, str(Path(__file__).parent))
from study_fixtures import small_data, write_study

CLI = [sys.executable, "-m", "pefomed.cli.app"]


def _finished(out: Path) -> dict[str, int]:
    """Finished cells/selections -> the mtime of their done marker."""
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/*/" + DONE)}


@pytest.fixture(scope="module")
def killed_and_rerun(tmp_path_factory, demo_data):
    """The study is started, killed (whole process group, like a lost node) once three cells are
    finished, and run again with the same command."""
    tmp = tmp_path_factory.mktemp("study")
    data = small_data(demo_data, tmp / "data")
    study = write_study(tmp, data)
    out = tmp / "out"
    proc = subprocess.Popen([*CLI, "study", str(study), "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 900
    while len(list(out.glob(f"cells/*/{DONE}"))) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _finished(out)
    assert 3 <= len(before) < 12, "the kill came too late (or never)"
    preds_before = {k: (out / "cells" / k / "pred.jsonl").stat().st_mtime_ns
                    for k in before if (out / "cells" / k).is_dir()}
    rerun = subprocess.run([*CLI, "study", str(study), "--out", str(out)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    return {"study": study, "out": out, "data": data, "before": before, "preds_before": preds_before,
            "log": rerun.stdout + rerun.stderr}


@pytest.mark.slow
def test_the_study_runs_to_its_report(killed_and_rerun):
    out = killed_and_rerun["out"]
    report = read_json(out / "study.json")
    # 2 models x (zero-shot, lora, ia3); fine-tune rows have both seeds
    assert [(r["model"], r["adaptation"], r["method"], r["seeds"]) for r in report["rows"]] == [
        ("a", "zero-shot", None, []), ("a", "ft", "lora", [0, 1]), ("a", "ft", "ia3", [0, 1]),
        ("b", "zero-shot", None, []), ("b", "ft", "lora", [0, 1]), ("b", "ft", "ia3", [0, 1])]
    kinds = [(c["kind"], c["a"]["label"], c["b"]["label"]) for c in report["comparisons"]]
    assert ("base", "b · zero-shot", "a · zero-shot") in kinds
    assert ("method", "a · ft (ia3)", "a · ft (lora)") in kinds
    assert ("adaptation", "b · ft (lora)", "b · zero-shot") in kinds
    assert len(kinds) == 3 + 2 + 4
    for c in report["comparisons"]:
        e = c["metrics"]["vqa/overall"]
        assert e["p_holm"] is not None and e["p_holm"] >= e["p_value"]
        assert e["verdict_holm"] in ("win", "tie", "loss")
    summary = {(s["kind"], s["metric"]): s for s in report["summary"]}
    assert sum(summary[("base", "vqa/overall")][v] for v in ("win", "tie", "loss")) == 3
    html = (out / "study.html").read_text()
    assert "<svg" in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    md = (out / "study.md").read_text()
    assert "| b · zero-shot | a · zero-shot | vqa/overall |" in md and "wins" in md
    assert len(report["selections"]) == 2 and all(s["metric"] == "vqa/overall" for s in report["selections"])


@pytest.mark.slow
def test_a_killed_study_redoes_no_finished_cell_and_ends_with_the_same_report(killed_and_rerun):
    out, before = killed_and_rerun["out"], killed_and_rerun["before"]
    after = _finished(out)
    assert len(after) == 12  # 2 selections + 10 cells
    for unit, mtime in before.items():
        assert after[unit] == mtime, f"{unit} was redone"
    for cell, mtime in killed_and_rerun["preds_before"].items():
        assert (out / "cells" / cell / "pred.jsonl").stat().st_mtime_ns == mtime
    assert "skipped" in killed_and_rerun["log"]
    # running the finished study again runs nothing and writes the same report
    first = read_json(out / "study.json")
    again = subprocess.run([*CLI, "study", str(killed_and_rerun["study"]), "--out", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 0
    assert "ran " not in again.stdout + again.stderr
    assert read_json(out / "study.json") == first
    assert _finished(out) == after


@pytest.mark.slow
def test_the_report_reuses_kept_scores_until_a_prediction_changes(killed_and_rerun, tmp_path, monkeypatch):
    import shutil

    import pefomed.score.run as score_run
    from pefomed.study.report import CHECKSUM_SUFFIX, SCORES_DIR, build_report

    out = tmp_path / "copy"
    shutil.copytree(killed_and_rerun["out"], out)
    study, root = load_study(killed_and_rerun["study"])
    _, cells = plan_study(study, root, out)
    kept = sorted((out / SCORES_DIR).glob("*.json"))
    assert len(kept) == 6 + 9  # one per row group and per comparison
    assert all(p.with_name(p.name + CHECKSUM_SUFFIX).is_file() for p in kept)  # each verified on reuse
    scored = []
    real = score_run.score_files
    monkeypatch.setattr(score_run, "score_files", lambda paths, **kw: scored.append([*paths, *(kw.get("compare") or [])])
                        or real(paths, **kw))
    first = build_report(study, out, cells)
    assert scored == []  # every kept score reused
    # one cell's predictions change: its group and the comparisons with it are scored afresh, no other
    cell = next(c for c in cells if c.model == "a" and c.method == "lora" and c.seed == 0)
    pred = out / cell.folder / "pred.jsonl"
    pred.write_text(pred.read_text().replace('"prediction": "', '"prediction": "x', 1))
    changed = build_report(study, out, cells)
    assert scored and all(pred in paths for paths in scored)
    values = {(r["model"], r["method"]): r["metrics"]["vqa/overall"]["value"] for r in changed["rows"]}
    before = {(r["model"], r["method"]): r["metrics"]["vqa/overall"]["value"] for r in first["rows"]}
    assert all(v == before[k] for k, v in values.items() if k != ("a", "lora"))
    # an edited kept score is recomputed (tests/study/test_report_seeds_and_degenerate.py), never used


@pytest.mark.slow
def test_the_study_numbers_equal_the_same_cells_run_by_hand(killed_and_rerun, tmp_path):
    from pefomed.score.run import score_files

    out, data = killed_and_rerun["out"], killed_and_rerun["data"]
    study, root = load_study(killed_and_rerun["study"])
    _, cells = plan_study(study, root, out)
    cell = next(c for c in cells if c.model == "b" and c.method == "ia3" and c.seed == 1)
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    train_argv = next(s.argv for s in cell.steps if s.name == "train")
    # the cell's section.key=value overrides (its --data and --out are this test's own)
    overrides = [a for a in train_argv[2:] if "=" in a and not a.startswith("--")]
    for argv in (["train", "tiny-demo", "--data", str(data), "--out", "run", *overrides],
                 ["infer", "run", "--data", str(data), "--split", "test", "--out", "pred.jsonl", "--closed-answer", "rank"],
                 ["score", "pred.jsonl", "--out", "metrics.json", "--bootstrap", "200"]):
        subprocess.run([*CLI, *argv], cwd=by_hand, check=True, capture_output=True)
    assert (by_hand / "pred.jsonl").read_bytes() == (out / cell.folder / "pred.jsonl").read_bytes()
    mine, theirs = read_json(by_hand / "metrics.json"), read_json(out / cell.folder / "metrics.json")
    assert theirs["vqa"]["closed"]["value"] > 0
    assert mine["vqa"] == theirs["vqa"]
    # a report row is `pefomed score` over the row's seeds
    report = read_json(out / "study.json")
    row = next(r for r in report["rows"] if r["model"] == "b" and r["method"] == "ia3")
    seeds = sorted((c for c in cells if c.group == cell.group), key=lambda c: c.seed)
    pooled = score_files([out / c.folder / "pred.jsonl" for c in seeds], bootstrap=200)
    for metric, entry in row["metrics"].items():
        section, name = metric.split("/")
        assert entry["value"] == pooled[section][name]["value"]
        # the t interval over seeds is `pefomed score`'s; the row's interval is the bootstrap over
        # images within seeds and over seeds (tests/study/test_report_seeds_and_degenerate.py)
        assert entry["t_ci_low"] == pooled[section][name]["ci_low"]
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]


@pytest.mark.slow
def test_prompt_selection_ignores_the_test_split(killed_and_rerun, tmp_path, demo_data):
    """The same study on a DATA_DIR whose test split is rewritten chooses the same prompts with the
    same validation scores."""
    from pefomed.study.runner import run_units

    corrupted = small_data(demo_data, tmp_path / "data", corrupt_test=True)
    study = write_study(tmp_path, corrupted)
    selections, _ = plan_study(*load_study(study))
    run_units(selections, tmp_path / "out")
    original = killed_and_rerun["out"]
    for unit in selections:
        mine = read_json(tmp_path / "out" / unit.folder / "selection.json")
        same = next(original.glob(f"selections/mini.{unit.model}.zero-shot-*/selection.json"))
        theirs = read_json(same)
        assert mine["chosen"] == theirs["chosen"]
        assert [c["value"] for c in mine["candidates"]] == [c["value"] for c in theirs["candidates"]]


@pytest.mark.slow
def test_submitit_local_executor_runs_a_cell(killed_and_rerun, tmp_path):
    submitit = pytest.importorskip("submitit")
    from pefomed.study.runner import run_units

    study, root = load_study(killed_and_rerun["study"])
    src = killed_and_rerun["out"]
    _, cells = plan_study(study, root, src)
    cell = next(c for c in cells if c.model == "a" and c.adaptation == "zero-shot")
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=10)
    results = run_units([cell], tmp_path / "out", executor=executor)
    assert results == [{"id": cell.id, "status": "ran"}]
    assert (tmp_path / "out" / cell.folder / DONE).is_file()
    assert (tmp_path / "out" / cell.folder / "pred.jsonl").read_bytes() == (src / cell.folder / "pred.jsonl").read_bytes()


@pytest.mark.slow
def test_gpus_run_cells_side_by_side_one_device_each(killed_and_rerun, tmp_path):
    from pefomed.study.runner import run_units

    study, root = load_study(killed_and_rerun["study"])
    src = killed_and_rerun["out"]
    _, cells = plan_study(study, root, src)
    zero_shot = [c for c in cells if c.adaptation == "zero-shot"]
    assert len(zero_shot) == 2
    results = run_units(zero_shot, tmp_path, gpus=["0", "1"])
    assert sorted(r["status"] for r in results) == ["ran", "ran"]
    devices = set()
    for cell in zero_shot:
        log = (tmp_path / cell.folder / "log.txt").read_text()
        # each cell saw one device for all its steps
        seen = {line.split("=", 1)[1] for line in log.splitlines() if line.startswith("# CUDA_VISIBLE_DEVICES=")}
        assert len(seen) == 1
        devices |= seen
        assert (tmp_path / cell.folder / "pred.jsonl").read_bytes() == (src / cell.folder / "pred.jsonl").read_bytes()
    assert devices <= {"0", "1"}
