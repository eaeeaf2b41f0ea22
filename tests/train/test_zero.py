"""ZeRO stages: the same run under ZeRO-0, 2 and 3 gives the same adapter; under ZeRO-3 the saved
adapter is gathered (non-empty) and reloads to the trained model's outputs; batches without
images train; gradient checkpointing works with the frozen vision tower."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file


COMMON = ["train.max_steps=3", "train.batch_size=4", "train.lr=1e-2", "method.dropout=0.0", "train.seed=5"]


@pytest.fixture(scope="module")
def spot_data(tmp_path_factory):
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("spot") / "data", n_train=16, n_test=4)


def run(tmp_path, data, name, extra=()):
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    recipe = load_recipe("tiny-demo", [*COMMON, *extra])
    recipe.data.dir = str(data)
    return train(recipe, tmp_path / name)


@pytest.mark.slow
def test_zero_stages_agree_and_zero3_saves_a_gathered_adapter(tmp_path, spot_data):
    from pefomed.data.collate import Collator
    from pefomed.models.run_dir import load_run
    from pefomed.records import read_split

    adapters = {}
    for stage in ("zero0", "zero2", "zero3"):
        result = run(tmp_path, spot_data, stage, [f"train.deepspeed={stage}"])
        adapters[stage] = load_file(result.saved / "adapter_model.safetensors")
    zero3 = adapters["zero3"]
    assert zero3 and all(t.numel() > 0 for t in zero3.values()), "ZeRO-3 adapter must be gathered, not empty shards"
    for stage in ("zero0", "zero2"):
        for key, value in adapters[stage].items():
            assert torch.allclose(value, zero3[key], atol=1e-5), (stage, key)

    # the reloaded ZeRO-3 adapter reproduces the in-memory model (forward gathers under ZeRO-3)
    recipe, bundle = load_run(result.run_dir)
    collator = Collator(bundle.processor, recipe.data, spot_data, train=True)
    batch = collator([collator.encode(s) for s in read_split(spot_data, "test")])
    result.engine.eval()
    with torch.no_grad():
        expected = result.engine(**batch).logits
        got = bundle.model(**batch).logits
    assert torch.allclose(expected, got, atol=1e-5)


@pytest.mark.slow
def test_batches_mixing_samples_with_and_without_images(tmp_path, spot_data):
    from pefomed.records import read_split, write_split

    samples = read_split(spot_data, "train")
    for i, sample in enumerate(samples):
        if i % 2:  # every other sample becomes text-only
            sample.images = []
            sample.question = "Is the answer to this text-only question yes?"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copytree(spot_data / "images", mixed / "images")  # a DATA_DIR's images live inside it
    write_split(mixed, "train", samples)
    # a batch of only text-only samples happens too: batch_size 1 walks them one by one
    result = run(tmp_path, mixed, "run", ["train.batch_size=1", "train.max_steps=4", "train.deepspeed=zero3"])
    log = [json.loads(line) for line in open(result.run_dir / "train_log.jsonl")]
    assert len(log) == 4 and all(torch.isfinite(torch.tensor(row["loss"])) for row in log)


@pytest.mark.slow
def test_gradient_checkpointing_matches_plain_training(tmp_path, spot_data):
    plain = load_file(run(tmp_path, spot_data, "plain").saved / "adapter_model.safetensors")
    result = run(tmp_path, spot_data, "ckpt", ["train.gradient_checkpointing=true"])
    base = result.model.get_base_model()
    assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing
    checkpointed = load_file(result.saved / "adapter_model.safetensors")
    for key in plain:
        assert torch.allclose(plain[key], checkpointed[key], atol=1e-5), key


@pytest.mark.slow
def test_zero3_cpu_offload_matches_zero2(tmp_path, spot_data):
    # ZeRO-Offload uses DeepSpeed's CPU AdamW (compiled on first use): same maths as torch's AdamW
    reference = load_file(run(tmp_path, spot_data, "z2", ["train.deepspeed=zero2"]).saved / "adapter_model.safetensors")
    offload = load_file(run(tmp_path, spot_data, "off", ["train.deepspeed=zero3_offload"]).saved
                        / "adapter_model.safetensors")
    for key in reference:
        assert torch.allclose(reference[key], offload[key], atol=1e-4), key


@pytest.mark.slow
def test_bf16_training_runs_and_saves(tmp_path, spot_data):
    result = run(tmp_path, spot_data, "bf16", ["train.precision=bf16"])
    log = [json.loads(line) for line in open(result.run_dir / "train_log.jsonl")]
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in log)
    weights = load_file(result.saved / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items()), "bf16 steps must move the adapter"


def test_fp16_without_a_gpu_is_a_clear_error(tmp_path, spot_data, capsys):
    from pefomed.cli.app import main

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["train", "tiny-demo", "--data", str(spot_data), "--out", str(tmp_path / "r"),
                 "train.precision=fp16"]) == 2
    assert "fp16 needs a CUDA GPU" in capsys.readouterr().err
