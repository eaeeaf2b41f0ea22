"""model.kind=composed through the real paths: two DeepSpeed steps with pefomed.train.loop.train,
then pefomed.models.run_dir.load_run (AutoProcessor reloads the saved ComposedProcessor) and predict."""

import json

from composed_parts import build_parts, composed_overrides


def test_train_two_steps_then_infer(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset
    from pefomed.infer.generate import predict
    from pefomed.models.run_dir import load_run
    from pefomed.infer.sources import split_samples
    from pefomed.models.composed import ComposedForConditionalGeneration, ComposedProcessor
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    vision, llm = build_parts(tmp_path / "parts")
    data = write_bright_spot_dataset(tmp_path / "spot", n_train=16, n_test=6, seed=3)
    recipe = load_recipe("tiny-demo", composed_overrides(vision, llm) + ["train.max_steps=2", "train.batch_size=4"])
    recipe.data.dir = str(data)
    run = tmp_path / "run"
    train(recipe, run)

    trainable = json.loads((run / "trainable.json").read_text())["components"]
    assert trainable["vision"]["trainable"] == 0 and trainable["vision"]["total"] > 0
    # peft keeps a frozen original next to the trained copy of a modules_to_save module
    assert 2 * trainable["projector"]["trainable"] == trainable["projector"]["total"] > 0
    assert 0 < trainable["llm"]["trainable"] < trainable["llm"]["total"]
    assert len((run / "train_log.jsonl").read_text().splitlines()) == 2

    loaded, bundle = load_run(run)
    assert loaded.model.kind == "composed" and isinstance(bundle.processor, ComposedProcessor)
    assert isinstance(bundle.model.get_base_model(), ComposedForConditionalGeneration)
    samples, root = split_samples(data, "test")
    out = predict(samples, root, loaded, bundle, tmp_path / "pred.jsonl", max_new_tokens=3)
    rows = [json.loads(line) for line in open(out)]
    assert [r["id"] for r in rows] == [s.id for s in samples]
    assert all(isinstance(r["prediction"], str) for r in rows)
