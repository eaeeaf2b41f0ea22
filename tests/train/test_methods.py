"""Every tuning method trains through DeepSpeed and saves what reloads to identical outputs."""

import json

import pytest
import torch

METHODS = ["lora", "dora", "rslora", "ia3", "prefix", "prompt", "projector", "full"]


@pytest.fixture(scope="module")
def spot_data(tmp_path_factory):
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("spot") / "data", n_train=16, n_test=4)


def fixed_batch(processor, recipe, data_dir):
    from pefomed.data.collate import Collator
    from pefomed.records import read_split

    collator = Collator(processor, recipe.data, data_dir, train=True)
    return collator([collator.encode(s) for s in read_split(data_dir, "test")])


def train_method(tmp_path, data, method, extra=()):
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    recipe = load_recipe("tiny-demo", [f"method.name={method}", "train.max_steps=2", "train.batch_size=4",
                                       "train.lr=1e-2", "method.num_virtual_tokens=4", *extra])
    recipe.data.dir = str(data)
    return train(recipe, tmp_path / method)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_and_reloads_to_identical_outputs(tmp_path, spot_data, method):
    from pefomed.models.run_dir import load_run

    result = train_method(tmp_path, spot_data, method)
    recipe, bundle = load_run(result.run_dir)
    batch = fixed_batch(bundle.processor, recipe, spot_data)
    trained = result.model.eval()
    with torch.no_grad():
        before = trained(**batch).logits
        after = bundle.model(**batch).logits
    assert torch.allclose(before, after, atol=1e-5), (before - after).abs().max()

    counts = json.loads((result.run_dir / "trainable.json").read_text())["components"]
    trainable = {part: v["trainable"] for part, v in counts.items()}
    assert trainable.get("vision", 0) == 0, "the vision tower stays frozen unless asked"
    assert trainable["projector"] > 0
    if method == "projector":
        assert trainable["llm"] == 0 and trainable.get("other", 0) == 0
    if method == "full":
        assert trainable["llm"] == counts["llm"]["total"]
    if method in ("projector", "full"):
        assert (result.run_dir / "weights" / "model.safetensors").is_file()
    else:
        assert (result.run_dir / "adapter" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_lora_on_the_vision_tower_is_opt_in(tmp_path, spot_data):
    from safetensors.torch import load_file

    default = load_file(train_method(tmp_path / "a", spot_data, "lora").saved / "adapter_model.safetensors")
    assert not any("vision_tower" in k for k in default)
    opted = load_file(train_method(tmp_path / "b", spot_data, "lora", ["method.vision_lora=true"]).saved
                      / "adapter_model.safetensors")
    assert any("vision_tower" in k and "lora_A" in k for k in opted)
