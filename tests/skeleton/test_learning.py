"""The learning check: the tiny model, trained through the real DeepSpeed path with LoRA on the
LLM and a trainable projector over a frozen vision tower, goes from chance to >= 0.9 held-out
accuracy on a question whose answer is only in the pixels."""

import json

import pytest

from pefomed.cli.app import main


def accuracy(pred_path):
    rows = [json.loads(line) for line in open(pred_path)]
    return sum(r["prediction"].strip().lower() == r["reference"] for r in rows) / len(rows), len(rows)


@pytest.mark.slow
def test_image_features_reach_the_llm(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset
    from pefomed.infer.generate import predict
    from pefomed.infer.sources import split_samples
    from pefomed.models.loader import load_base
    from pefomed.recipe import load_recipe

    data = write_bright_spot_dataset(tmp_path / "spot", n_train=200, n_test=100, seed=1)
    run = tmp_path / "run"
    overrides = ["train.epochs=4", "train.batch_size=16", "train.lr=5e-3", "train.seed=0"]
    assert main(["train", "tiny-demo", "--data", str(data), "--out", str(run), *overrides]) == 0

    # before: the same base weights, no adapter
    recipe = load_recipe(run / "recipe.yaml")
    bundle = load_base(str(run / "base_model"), recipe.model)
    samples, root = split_samples(data, "test")
    predict(samples, root, recipe, bundle, tmp_path / "before.jsonl")
    before, n = accuracy(tmp_path / "before.jsonl")
    assert n == 100 and before <= 0.6, f"untrained model should be at chance, got {before}"

    # after: pefomed infer + pefomed score, as a user runs them
    assert main(["infer", str(run), "--data", str(data), "--out", str(tmp_path / "after.jsonl")]) == 0
    after, _ = accuracy(tmp_path / "after.jsonl")
    assert after >= 0.9, f"held-out accuracy after training: {after}"
    assert main(["score", str(tmp_path / "after.jsonl"), "--out", str(tmp_path / "metrics.json")]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["vqa"]["overall"]["value"] == pytest.approx(after)
    assert metrics["vqa"]["overall"]["ci_low"] <= after <= metrics["vqa"]["overall"]["ci_high"]

    log = [json.loads(line) for line in open(run / "train_log.jsonl")]
    assert log[-1]["loss"] < log[0]["loss"] / 10
