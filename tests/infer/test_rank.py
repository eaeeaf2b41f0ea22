"""Closed answers by ranking candidates (`closed_answer="rank"`, pefomed.infer.rank).

The model is the built-in tiny LLaVA trained briefly, through the real DeepSpeed path, on a task
whose answer is in the question ("Is the finding present?" -> yes, "Is the study normal?" -> no),
which a few steps teach confidently: there generation and ranking must agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pefomed.records import Sample

QUESTIONS = {"Is the finding present?": "yes", "Is the study normal?": "no"}


def _sample(sid, question, answer="yes", answer_type="closed", meta=None, task="vqa"):
    return Sample(id=sid, task=task, images=["images/train_00000.png"], question=question, answer=answer,
                  answer_type=answer_type, meta=meta or {})


def test_candidates_come_from_the_question_and_meta_never_the_reference():
    from pefomed.infer.rank import closed_candidates

    assert closed_candidates(_sample("a", "Is there a mass?", answer="no")) == ["yes", "no"]
    assert closed_candidates(_sample("a", "Is there a mass?", answer="left")) == ["yes", "no"]
    # alternatives offered in the question: ranked among them (and yes/no; tests/infer/test_rank_candidates.py)
    assert closed_candidates(_sample("b", "Is this an MRI or a CT scan?", answer="mri")) == \
        closed_candidates(_sample("b", "Is this an MRI or a CT scan?", answer="ct")) == ["MRI", "CT scan", "MRI scan", "CT", "yes", "no"]
    assert closed_candidates(_sample("c", "What organ is shown?", answer_type="open")) is None
    assert closed_candidates(_sample("d", "肝脏正常吗?", meta={"language": "zh"})) is None
    assert closed_candidates(_sample("e", "", task="report", answer_type=None)) is None
    choices = {"A": "Axial", "B": "Coronal", "C": "Sagittal"}
    # pmc-vqa as prepared by default: asked open-ended, the choice texts are the candidates
    assert closed_candidates(_sample("f", "Which plane?", answer="Coronal", answer_type="open",
                                     meta={"choices": choices})) == ["Axial", "Coronal", "Sagittal"]
    # prepare --multiple-choice lists "L: text" in the question and answers "B: Coronal"
    listed = "Which plane?\nA: Axial\nB: Coronal\nC: Sagittal"
    assert closed_candidates(_sample("g", listed, answer="B: Coronal", meta={"choices": choices})) == \
        ["A: Axial", "B: Coronal", "C: Sagittal"]
    assert closed_candidates(_sample("h", "Which?", meta={"options": ["left", "right"]})) == ["left", "right"]


def _write_data(root: Path, n_train: int = 48, n_test: int = 8) -> Path:
    """A DATA_DIR whose answers follow from the question (images from the bright-spot task)."""
    from pefomed.data.synthetic import write_bright_spot_dataset
    from pefomed.records import write_split

    data = write_bright_spot_dataset(root / "qa", n_train=n_train, n_test=n_test, seed=2)
    questions = list(QUESTIONS)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            question = questions[(i // 2) % 2]  # independent of the image's own yes/no
            rows.append(Sample(id=f"qa-{split}-{i}", task="vqa", images=[f"images/{split}_{i:05d}.png"],
                               question=question, answer=QUESTIONS[question], answer_type="closed"))
        write_split(data, split, rows)
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from pefomed.models.run_dir import load_run
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    root = tmp_path_factory.mktemp("rank")
    data = _write_data(root)
    recipe = load_recipe("tiny-demo", ["train.max_steps=24", "train.batch_size=8", "train.lr=2e-2",
                                         "train.scheduler=constant", "train.seed=0"])
    recipe.data.dir = str(data)
    train(recipe, root / "run")
    recipe, bundle = load_run(root / "run")
    return data, recipe, bundle


def test_rank_agrees_with_generation_where_the_model_is_confident(trained, tmp_path):
    from pefomed.infer.fewshot import Prompting
    from pefomed.infer.generate import predict
    from pefomed.infer.rank import Ranker
    from pefomed.records import read_split

    data, recipe, bundle = trained
    samples = read_split(data, "test")
    scores = Ranker(bundle.model, bundle.processor, recipe.data, data).scores(samples, [["yes", "no"]] * len(samples))
    margins = [abs(a - b) for a, b in scores]
    assert min(margins) > 1.0, f"the briefly trained model should be confident here: {margins}"
    rows = {}
    for mode in ("generate", "rank"):
        out = predict(samples, data, recipe, bundle, tmp_path / f"{mode}.jsonl", prompting=Prompting(closed_answer=mode))
        rows[mode] = [json.loads(line) for line in Path(out).read_text().splitlines()]
    generated = [r["prediction"] for r in rows["generate"]]
    ranked = [r["prediction"] for r in rows["rank"]]
    assert generated == ranked == [s.answer for s in samples]  # both answers occur: not a constant model
    assert set(ranked) == {"yes", "no"}


def test_ranking_returns_a_candidate_and_a_batch_equals_one_by_one(trained):
    from pefomed.infer.rank import Ranker
    from pefomed.records import read_split

    data, recipe, bundle = trained
    samples = read_split(data, "test")[:4]
    # candidates of different token lengths, unrelated to the training answers
    candidates = [["yes", "no"], ["left lower lobe", "right", "no"], ["a small nodule", "yes"], ["bilateral", "none"]]
    batched = Ranker(bundle.model, bundle.processor, recipe.data, data, batch_size=16)
    alone = Ranker(bundle.model, bundle.processor, recipe.data, data, batch_size=1)
    together = batched.scores(samples, candidates)
    for sample, options, scores in zip(samples, candidates, together):
        assert alone.scores([sample], [options])[0] == pytest.approx(scores, abs=1e-4)
    answers = batched(samples, candidates)
    assert all(a in c for a, c in zip(answers, candidates))
    assert answers == [c[max(range(len(c)), key=lambda j: s[j])] for c, s in zip(candidates, together)]


def test_a_candidate_score_is_the_training_log_likelihood_of_that_answer(trained):
    """Same layout as training: minus the score equals the training loss of the sample with that
    answer, times its supervised tokens (answer + end token)."""
    from dataclasses import replace

    from pefomed.data.collate import IGNORE_INDEX, Collator
    from pefomed.infer.rank import Ranker
    from pefomed.records import read_split

    data, recipe, bundle = trained
    sample = read_split(data, "test")[0]
    score = Ranker(bundle.model, bundle.processor, recipe.data, data).scores([sample], [["pleural effusion"]])[0][0]
    collator = Collator(bundle.processor, recipe.data, data, train=True)
    batch = collator([collator.encode(replace(sample, answer="pleural effusion"))])
    n = int((batch["labels"] != IGNORE_INDEX).sum())
    assert n >= 3  # several answer tokens plus the end token
    with torch.no_grad():
        loss = bundle.model(**batch).loss.item()
    assert -score == pytest.approx(loss * n, rel=1e-4)
