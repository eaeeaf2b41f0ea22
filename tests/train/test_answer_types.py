"""data.answer_types: a run trains (and validates) on the VQA questions of the named answer types
only (Med-R1 trains on closed questions); a bad value, a report data set or an empty selection is
one error naming the key."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pefomed.errors import UserError
from pefomed.records import Sample, read_split, write_split
from pefomed.train.plan import Plan, check_data, of_answer_types

PEFOMED = str(Path(sys.executable).with_name("pefomed"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, demo_data) -> Path:
    """A DATA_DIR of 12 train and 6 val questions of the demo data, closed and open mixed; one
    closed train question has no answer_type (a yes/no answer: closed, as `pefomed score` types it)."""
    out = tmp_path_factory.mktemp("answer-types") / "data"
    out.mkdir()
    rows = read_split(demo_data, "train")
    random.Random(1).shuffle(rows)
    closed = [r for r in rows if r.answer_type == "closed"]
    opened = [r for r in rows if r.answer_type == "open"]
    train, val = closed[:7] + opened[:5], closed[7:10] + opened[5:8]
    assert train[0].answer.lower() in ("yes", "no")
    train[0].answer_type = None
    write_split(out, "train", train)
    write_split(out, "val", val)
    write_split(out, "test", val[:2])
    shutil.copytree(Path(demo_data, "images"), out / "images")
    return out


def _recipe(data: Path, *overrides: str):
    from pefomed.recipe import load_recipe

    recipe = load_recipe("tiny-demo", list(overrides))
    recipe.data.dir = str(data)
    return recipe


def test_the_plan_keeps_the_named_answer_types(mixed):
    closed = _recipe(mixed, "data.answer_types=[closed]", "train.batch_size=2", "train.eval_every=1",
                     "train.epochs=1")
    plan = Plan.make(closed, check_data(closed), world=1)
    assert [s.answer_type for s in plan.samples[0]] == [None] + ["closed"] * 6
    assert plan.total_steps == 7 // 2  # one epoch over the closed questions only (the last partial batch dropped)
    assert [s.answer_type for s in plan.evals[0].samples] == ["closed"] * 3
    both = _recipe(mixed, "data.answer_types=[closed, open]")
    assert len(Plan.make(both, check_data(both), world=1).samples[0]) == 12
    every = _recipe(mixed)
    assert len(Plan.make(every, check_data(every), world=1).samples[0]) == 12


def test_a_report_split_or_an_empty_selection_is_refused_naming_the_key():
    report = [Sample(id="r1", task="report", images=["a.png"], answer="No acute findings.")]
    with pytest.raises(UserError) as err:
        of_answer_types(report, ["closed"], "d/train.jsonl")
    assert "data.answer_types" in str(err.value) and "report" in str(err.value)
    open_only = [Sample(id="q1", task="vqa", images=["a.png"], question="What organ?", answer="liver",
                        answer_type="open")]
    with pytest.raises(UserError, match=r"data.answer_types=\['closed'\] keeps none of the 1 questions"):
        of_answer_types(open_only, ["closed"], "d/train.jsonl")


def test_train_through_the_cli_runs_one_epoch_of_closed_questions(mixed, tmp_path):
    run = tmp_path / "run"
    done = subprocess.run([PEFOMED, "train", "tiny-demo", "--data", str(mixed), "--out", str(run),
                           "data.answer_types=[closed]", "train.batch_size=4", "train.epochs=1", "train.log_every=1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert max(steps) == 7 // 4  # 12 questions, 7 closed: 1 step of 4 (all 12 would be 3)
    bad = subprocess.run([PEFOMED, "train", "tiny-demo", "--data", str(mixed), "--out", str(tmp_path / "bad"),
                          "data.answer_types=[yes]"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "data.answer_types" in bad.stderr and "Traceback" not in bad.stderr
