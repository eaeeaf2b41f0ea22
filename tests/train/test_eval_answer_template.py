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
from safetensors.torch import load_file

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


def _train(data: Path, out: Path, template: str) -> dict:
    # 120 steps at lr 1e-2: the tiny model then writes `<think>spot</think><answer>yes|no</answer>`
    # for the val images (7 of 8 right in the run that set this), within infer.max_new_tokens 40
    done = subprocess.run([PEFOMED, "train", "tiny-demo", "--data", str(data), "--out", str(out),
                           "train.max_steps=120", "train.batch_size=16", "train.lr=1e-2", "train.warmup_steps=0",
                           "train.save_every=1000", "train.eval_every=120", "train.tensorboard=false",
                           "infer.max_new_tokens=40", f"infer.answer_template={template}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "eval_log.jsonl").read_text().splitlines()[-1])


@pytest.mark.slow  # two 120-step CLI runs: 8 s of training each in-process on idle cores, ~50 s each under load 4
def test_a_run_trained_on_the_template_is_evaluated_on_its_extracted_answers(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset
    from pefomed.records import read_split, write_split

    data = write_bright_spot_dataset(tmp_path / "data", n_train=32, n_test=8)
    # train on templated answers; the val split's references are the plain yes / no
    write_split(data, "train", [replace(s, answer=f"<think>spot</think><answer>{s.answer}</answer>")
                                for s in read_split(data, "train")])
    write_split(data, "val", read_split(data, "test"))
    extracted = _train(data, tmp_path / "think", "think_answer")
    as_generated = _train(data, tmp_path / "none", "none")
    # the same training (answer_template changes only how answers are read): the same adapter
    a = load_file(tmp_path / "think" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "none" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    # so the gap is the extraction: the tagged texts never equal 'yes' / 'no' as generated
    assert as_generated["metric"] == extracted["metric"] == "vqa_accuracy"
    assert as_generated["value"] == 0.0
    assert extracted["value"] >= 0.5, extracted
