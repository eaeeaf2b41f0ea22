"""Training-time evaluation reads infer.answer_template as `pefomed infer` does: under think_answer
a generated `<think>…</think><answer>yes</answer>` is the prediction 'yes'; under none the text is
scored as generated (nothing changes)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pefomed.records import Sample
from pefomed.train.evaluate import score_generated

PEFOMED = str(Path(sys.executable).with_name("pefomed"))


def _vqa(answer: str) -> Sample:
    return Sample(id="q", task="vqa", images=[], question="Is there a bright spot?", answer=answer,
                  answer_type="closed")


def test_the_evaluations_prediction_is_the_answer_inside_the_template():
    texts = ["<think>a bright spot, upper left</think> <answer> yes </answer>", "<think>none seen</think><answer>no"]
    refs = [_vqa("yes"), _vqa("no")]
    # the first: its <answer> block; the second has none, so the whole text (as infer writes it)
    assert score_generated("vqa_accuracy", refs, texts, "think_answer") == 0.5
    assert score_generated("vqa_accuracy", refs, texts, "none") == 0.0
    # plain answers score the same under either template
    assert score_generated("vqa_accuracy", refs, ["yes", "no"], "think_answer") == 1.0
    assert score_generated("vqa_accuracy", refs, ["yes", "no"], "none") == 1.0


@pytest.mark.slow  # one 120-step CLI run: ~8 s of training on 2 idle cores (minutes under a load of 9)
def test_a_run_trained_on_the_template_is_evaluated_on_its_extracted_answers(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset
    from pefomed.models.generation import Generator
    from pefomed.models.run_dir import load_run
    from pefomed.records import read_split, write_split
    from pefomed.train.evaluate import generate_and_score

    data = write_bright_spot_dataset(tmp_path / "data", n_train=32, n_test=8)
    # train on templated answers; the val split's references are the plain yes / no
    write_split(data, "train", [replace(s, answer=f"<think>spot</think><answer>{s.answer}</answer>")
                                for s in read_split(data, "train")])
    val = read_split(data, "test")
    write_split(data, "val", val)
    run = tmp_path / "run"
    # 120 steps at lr 1e-2: the tiny model then writes `<think>spot</think><answer>yes|no</answer>`
    # for the val images (7 of 8 right in the run that set this), within infer.max_new_tokens 40
    done = subprocess.run([PEFOMED, "train", "tiny-demo", "--data", str(data), "--out", str(run),
                           "train.max_steps=120", "train.batch_size=16", "train.lr=1e-2", "train.warmup_steps=0",
                           "train.save_every=1000", "train.eval_every=120", "train.tensorboard=false",
                           "infer.max_new_tokens=40", "infer.answer_template=think_answer"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = json.loads((run / "eval_log.jsonl").read_text().splitlines()[-1])
    assert logged["step"] == 120 and logged["metric"] == "vqa_accuracy"
    assert logged["value"] >= 0.5, logged  # before the extraction, this run logged 0.0

    # the same trained model, evaluated again in this process: what it generates is tagged, so
    # under none (nothing extracted) no answer equals 'yes' / 'no', and the run's value comes back
    # under think_answer
    recipe, bundle = load_run(run)
    texts = Generator(bundle.model, bundle.processor, recipe.data, data, 40)(val)
    assert sum("<answer>" in t for t in texts) >= len(val) // 2, texts
    values = {}
    for template in ("think_answer", "none"):
        recipe.infer.answer_template = template
        values[template] = generate_and_score(bundle.model, bundle.processor, recipe, data, val, "vqa_accuracy",
                                              rank=0, world=1, stage=0)
    assert values["none"] == 0.0, values
    # the reloaded adapter is the trained one; at most one near-tie may decode differently
    assert abs(values["think_answer"] - logged["value"]) <= 1 / len(val), (values, logged)
