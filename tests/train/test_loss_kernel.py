"""train.loss_kernel: the fused path (the head replaced, for one call, by a loss on its inputs).

liger-kernel's kernel runs only on CUDA; what runs here is everything around it. With the
unfused reference kernel (`linear_cross_entropy_sum`) in its place, the loss and every trainable
gradient equal the standard path's, for image-text families, Gemma's softcap, prompt tuning and
pefomed's composed model, with and without answer-only logits; the head's forward is restored
afterwards, also when the forward fails; on this CPU `pefomed train ... train.loss_kernel=liger`
is refused with one line naming the key, before any model loads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).parents[1] / "composed"))
from tiny_families import BUILDERS  # noqa: E402
from train_helpers import spot_batch  # noqa: E402

ANSWERS = ["yes", "there is a bright round spot in the upper left part of the image", "no"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("spot") / "data", n_train=4, n_test=1)


def _batch(processor, data_dir: Path):
    return spot_batch(processor, data_dir, ANSWERS)


def _loss_and_grads(model, run):
    model.zero_grad()
    loss = run()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.detach(), grads


def _check_fused_equals_standard(model, batch, labels):
    from pefomed.train.fused_loss import linear_cross_entropy_sum
    from pefomed.train.loss import micro_batch_loss_sum

    from pefomed.train.fused_loss import head_transform

    head = model.get_output_embeddings()
    head_transform(model, batch, labels)  # the one probing forward, before the head's calls are counted
    for answer_only in (True, False):
        standard, standard_grads = _loss_and_grads(
            model, lambda: micro_batch_loss_sum(model, batch, labels, answer_only=answer_only))
        rows = []
        handle = head.register_forward_hook(lambda _m, inputs, _o: rows.append(inputs[0].shape[1]))
        try:
            fused, fused_grads = _loss_and_grads(
                model, lambda: micro_batch_loss_sum(model, batch, labels, answer_only=answer_only,
                                                    kernel=linear_cross_entropy_sum))
        finally:
            handle.remove()
        assert "forward" not in head.__dict__, "the head's own forward must be back"
        assert len(rows) == 1, "the head is called once, through the model's own forward"
        assert torch.allclose(fused, standard, rtol=1e-5, atol=1e-5), (answer_only, fused.item(), standard.item())
        assert fused_grads.keys() == standard_grads.keys() and fused_grads
        for name, grad in standard_grads.items():
            assert torch.allclose(fused_grads[name], grad, rtol=1e-5, atol=1e-6), (answer_only, name)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "gemma3"])
def test_fused_path_equals_the_standard_loss(family, data_dir, tmp_path):
    from pefomed.models.hf import load_pretrained
    from pefomed.models.peft_methods import apply_method
    from pefomed.recipe import MethodSection, ModelSection

    model_dir = BUILDERS[family](tmp_path / family)
    bundle = load_pretrained(str(model_dir), ModelSection(kind="hf", name_or_path=str(model_dir)))
    if family == "gemma3":
        # configured, but transformers 5.25's Gemma3ForConditionalGeneration does not apply it:
        # the fused path must follow what the model does, not what its config says
        bundle.model.config.get_text_config().final_logit_softcapping = 2.0
    model = apply_method(bundle.model, MethodSection(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    model.train()
    batch, labels = _batch(bundle.processor, data_dir)
    _check_fused_equals_standard(model, batch, labels)


def test_prompt_tuning_and_composed(data_dir, tmp_path):
    from composed_parts import build_parts, composed_overrides

    from pefomed.models.hf import load_pretrained
    from pefomed.models.loader import load_base
    from pefomed.models.peft_methods import apply_method
    from pefomed.recipe import MethodSection, ModelSection, load_recipe

    model_dir = BUILDERS["llava"](tmp_path / "llava")
    bundle = load_pretrained(str(model_dir), ModelSection(kind="hf", name_or_path=str(model_dir)))
    model = apply_method(bundle.model, MethodSection(name="prompt", num_virtual_tokens=5))
    model.train()
    _check_fused_equals_standard(model, *_batch(bundle.processor, data_dir))

    recipe = load_recipe("tiny-demo", composed_overrides(*build_parts(tmp_path / "parts")))
    torch.manual_seed(0)
    bundle = load_base("composed", recipe.model)
    model = apply_method(bundle.model, MethodSection(r=4, alpha=8, dropout=0.0))
    model.train()
    _check_fused_equals_standard(model, *_batch(bundle.processor, data_dir))


def test_head_is_restored_when_the_forward_fails(data_dir, tmp_path):
    from pefomed.models.hf import load_pretrained
    from pefomed.recipe import ModelSection
    from pefomed.train.fused_loss import fused_loss_sum, linear_cross_entropy_sum

    model_dir = BUILDERS["llava"](tmp_path / "llava")
    bundle = load_pretrained(str(model_dir), ModelSection(kind="hf", name_or_path=str(model_dir)))
    batch, labels = _batch(bundle.processor, data_dir)
    batch["pixel_values"] = batch["pixel_values"][:1]  # fewer images than image tokens: the model raises
    head = bundle.model.get_output_embeddings()
    with pytest.raises(ValueError):
        fused_loss_sum(bundle.model, batch, labels, linear_cross_entropy_sum)
    assert "forward" not in head.__dict__


class _CappedLM(torch.nn.Module):
    """A minimal causal LM whose forward transforms the head's logits the way Gemma 2 does
    (`cap * tanh(logits / cap)`), or by a plain scale (Cohere's logit_scale)."""

    def __init__(self, cap: float | None, scale: float = 1.0):
        super().__init__()
        from transformers import PretrainedConfig

        self.config = PretrainedConfig(final_logit_softcapping=cap)
        self.scale = scale
        self.embed = torch.nn.Embedding(32, 16)
        self.body = torch.nn.Linear(16, 16)
        self.lm_head = torch.nn.Linear(16, 32, bias=False)

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, logits_to_keep=0):
        from transformers.modeling_outputs import CausalLMOutput

        hidden = torch.tanh(self.body(self.embed(input_ids)))
        if isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden) * self.scale
        cap = self.config.final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return CausalLMOutput(logits=logits)


def test_a_softcap_the_model_applies_is_found_and_applied():
    from pefomed.train.fused_loss import head_transform, linear_cross_entropy_sum
    from pefomed.train.loss import micro_batch_loss_sum

    torch.manual_seed(0)
    model = _CappedLM(cap=3.0)
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # logits well past the cap, so a missing softcap would show
    input_ids = torch.randint(0, 32, (2, 9))
    labels = input_ids.clone()
    labels[:, :4] = -100
    batch = {"input_ids": input_ids}
    assert head_transform(model, batch, labels) == 3.0
    standard, standard_grads = _loss_and_grads(model, lambda: micro_batch_loss_sum(model, batch, labels))
    fused, fused_grads = _loss_and_grads(
        model, lambda: micro_batch_loss_sum(model, batch, labels, kernel=linear_cross_entropy_sum))
    assert torch.allclose(fused, standard, rtol=1e-5), (fused.item(), standard.item())
    for name, grad in standard_grads.items():
        assert torch.allclose(fused_grads[name], grad, rtol=1e-5, atol=1e-6), name
    assert head_transform(_CappedLM(cap=None), batch, labels) is None


def test_a_transform_it_cannot_reproduce_is_refused():
    from pefomed.errors import UserError
    from pefomed.train.fused_loss import head_transform

    input_ids = torch.randint(0, 32, (2, 9))
    with pytest.raises(UserError, match="transforms its logits after the head") as err:
        head_transform(_CappedLM(cap=None, scale=0.5), {"input_ids": input_ids}, input_ids)
    assert err.value.keys == ("train.loss_kernel",)


def test_the_probe_leaves_the_random_state_alone():
    from pefomed.train.fused_loss import head_transform

    model = _CappedLM(cap=None)
    model.body = torch.nn.Sequential(torch.nn.Dropout(0.5), model.body)
    model.train()
    input_ids = torch.randint(0, 32, (2, 9))
    torch.manual_seed(7)
    head_transform(model, {"input_ids": input_ids}, input_ids)
    after_probe = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(after_probe, torch.rand(3)), "train --resume replays the RNG: the probe must not draw"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_liger_is_refused_on_cpu_through_the_cli(data_dir, tmp_path):
    pefomed = Path(sys.executable).with_name("pefomed")
    result = subprocess.run([str(pefomed), "train", "tiny-demo", "--data", str(data_dir), "--out", str(tmp_path / "run"),
                             "train.loss_kernel=liger"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "train.loss_kernel=liger needs a CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists(), "refused before a RUN_DIR is written"
