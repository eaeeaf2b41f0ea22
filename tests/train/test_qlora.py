"""QLoRA (method.quantize: 4bit): LoRA over a bitsandbytes NF4 base, trained through the real
DeepSpeed loop on this CPU (bitsandbytes 0.50 quantises and back-propagates on CPU), saved,
reloaded and used for inference; ZeRO-3 trains the same adapter as ZeRO-2; resume is exact;
export merges into a bf16 base with a warning."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("bitsandbytes", reason="method.quantize needs bitsandbytes (pip install -e '.[qlora]')")

COMMON = ["method.quantize=4bit", "train.max_steps=2", "train.batch_size=4", "train.lr=1e-2",
          "method.dropout=0.0", "method.r=4"]


@pytest.fixture(scope="module")
def spot_data(tmp_path_factory):
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("spot") / "data", n_train=8, n_test=3)


def _train(run_dir, data, extra=(), resume=False):
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    recipe = load_recipe("tiny-demo", [*COMMON, *extra])
    recipe.data.dir = str(data)
    return train(recipe, run_dir, resume=resume)


@pytest.fixture(scope="module")
def zero2_run(tmp_path_factory, spot_data):
    return _train(tmp_path_factory.mktemp("qlora") / "run", spot_data, ["train.save_every=1"])


def _fixed_batch(processor, recipe, data_dir):
    from pefomed.data.collate import Collator
    from pefomed.records import read_split

    collator = Collator(processor, recipe.data, data_dir, train=True)
    batch = collator([collator.encode(s) for s in read_split(data_dir, "test")])
    batch.pop("labels")
    return batch


def _adapter(run_dir):
    from safetensors.torch import load_file

    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def test_trains_lora_over_a_4bit_llm(zero2_run):
    from pefomed.models.components import component_of

    model = zero2_run.model
    quantized = {n for n, m in model.named_modules() if type(m).__name__ == "Linear4bit" and "base_layer" not in n
                 and not n.endswith("lora_A") and not n.endswith("lora_B")}
    four_bit = [n for n, m in model.named_modules() if type(m).__module__.startswith("bitsandbytes")]
    assert four_bit and {component_of(n) for n in four_bit} == {"llm"}, "only the LLM is quantised"
    assert any(n.endswith("q_proj") for n in quantized), "LoRA wraps the 4-bit q_proj (peft's bnb layer)"
    head = model.get_output_embeddings()
    assert type(head) is torch.nn.Linear and head.weight.dtype == torch.float32, "the output head stays unquantised"
    for name, param in model.named_parameters():
        if type(param).__name__ == "Params4bit":
            assert not param.requires_grad, name

    log = [json.loads(line) for line in open(zero2_run.run_dir / "train_log.jsonl")]
    assert [r["step"] for r in log] == [1, 2] and all(math.isfinite(r["loss"]) for r in log)
    weights = _adapter(zero2_run.run_dir)
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b), "lora_B starts at zero: it must have trained"
    assert not any("absmax" in k or "quant" in k for k in weights), "no 4-bit base weights in the adapter"


def test_saved_adapter_restores_the_trained_model_and_infers(zero2_run, spot_data, tmp_path):
    """Over the same NF4 base the saved adapter gives the trained model's logits exactly; the run
    reloads through load_run (the path `pefomed infer` takes) and writes one prediction per sample."""
    from peft import PeftModel

    from pefomed.infer.generate import predict
    from pefomed.models.loader import load_base, materialize_base
    from pefomed.models.peft_methods import quantize_base
    from pefomed.models.run_dir import load_run
    from pefomed.records import read_split

    recipe, bundle = load_run(zero2_run.run_dir)
    assert recipe.method.quantize == "4bit"
    batch = _fixed_batch(bundle.processor, recipe, spot_data)

    base = load_base(materialize_base(recipe.model, zero2_run.run_dir), recipe.model)
    rebuilt = PeftModel.from_pretrained(quantize_base(base.model, recipe.method), zero2_run.run_dir / "adapter").eval()
    trained = zero2_run.model.eval()
    with torch.no_grad():
        expected = trained(**batch).logits
        assert torch.allclose(rebuilt(**batch).logits, expected, atol=1e-5)
        # over the unquantised base the adapter is close to, not equal to, the trained model
        reloaded = bundle.model(**batch).logits
    assert reloaded.shape == expected.shape and torch.isfinite(reloaded).all()

    samples = read_split(spot_data, "test")
    out = predict(samples, spot_data, recipe, bundle, tmp_path / "pred.jsonl")
    rows = [json.loads(line) for line in open(out)]
    assert [r["id"] for r in rows] == [s.id for s in samples]
    assert all(isinstance(r["prediction"], str) for r in rows)


def test_zero3_trains_the_same_adapter_as_zero2(zero2_run, spot_data, tmp_path):
    """The 4-bit data is stored in a float dtype, so ZeRO-3 partitions and gathers it like any
    parameter (two processes on this CPU were checked by hand to give the same losses)."""
    run = _train(tmp_path / "zero3", spot_data, ["train.deepspeed=zero3"])
    two, three = _adapter(zero2_run.run_dir), _adapter(run.run_dir)
    assert two.keys() == three.keys()
    for key in two:
        assert torch.allclose(two[key], three[key], atol=1e-5), key


def test_resume_is_exact(zero2_run, spot_data, tmp_path):
    """Checkpoints keep only trainable weights; on resume the 4-bit base is rebuilt from the base
    model and step 2 comes out exactly as in the uninterrupted run."""
    import shutil

    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    run_dir = tmp_path / "resumed"
    shutil.copytree(zero2_run.run_dir, run_dir)
    shutil.rmtree(run_dir / "adapter")
    (run_dir / "checkpoints" / "latest").write_text("step-0000001")
    shutil.rmtree(run_dir / "checkpoints" / "step-0000002")
    train(load_recipe(run_dir / "recipe.yaml"), run_dir, resume=True)
    resumed, straight = _adapter(run_dir), _adapter(zero2_run.run_dir)
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.allclose(resumed[key], straight[key], atol=1e-6), key


def test_export_merges_into_bf16_with_a_warning(zero2_run, tmp_path, capsys):
    from pefomed.export.run import export_run

    out = export_run(zero2_run.run_dir, tmp_path / "merged", merge=True)
    printed = capsys.readouterr()
    assert "4-bit" in printed.out + printed.err and "rounding" in printed.out + printed.err
    config = json.loads((out / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"


@pytest.mark.parametrize("method", ["full", "ia3", "prompt"])
def test_quantize_needs_a_lora_family_method(method):
    from pefomed.errors import UserError
    from pefomed.recipe import load_recipe

    with pytest.raises(UserError, match="method.quantize"):
        load_recipe("tiny-demo", ["method.quantize=4bit", f"method.name={method}"])


def test_a_qlora_run_is_inferred_on_its_4bit_base(tmp_path, demo_data):
    """load_run quantises the base like training did: the reloaded model's LLM layers are 4-bit."""
    import bitsandbytes as bnb

    from pefomed.models.run_dir import load_run
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    recipe = load_recipe("tiny-demo", ["train.max_steps=1", "train.batch_size=4", "method.quantize=4bit"])
    recipe.data.dir = str(demo_data)
    train(recipe, tmp_path / "run")
    _, bundle = load_run(tmp_path / "run")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in bundle.model.modules())
