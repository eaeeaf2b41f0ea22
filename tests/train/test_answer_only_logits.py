"""train.answer_only_logits: the LM head runs only where the loss is, with the same loss and gradients.

For every image-text family pefomed supports (tiny checkpoints built in code), pefomed's composed
model and prompt tuning (virtual tokens in front of the sequence), one LoRA micro-batch whose
answers have very different lengths is forwarded twice: full logits + token_loss_sum, and
logits_to_keep at the answer positions. Loss and every trainable gradient agree to 1e-5, and the
LM head really produced fewer rows (a hook on the head counts them).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).parents[1] / "composed"))
from tiny_families import BUILDERS  # noqa: E402
from train_helpers import spot_batch  # noqa: E402

FAMILIES = ["llava", "qwen2_vl", "qwen2_5_vl", "gemma3", "idefics3", "paligemma",
            pytest.param("smolvlm", marks=pytest.mark.skipif(importlib.util.find_spec("num2words") is None,
                                                             reason="SmolVLMProcessor needs num2words"))]
ANSWERS = ["yes", "there is a bright round spot in the upper left part of the image, clearly visible", "no"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("spot") / "data", n_train=4, n_test=1)


def _batch(processor, data_dir: Path):
    return spot_batch(processor, data_dir, ANSWERS)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _head_rows(model, run):
    """Run `run()` and return (its result, rows x positions the LM head computed)."""
    shapes = []
    head = model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    try:
        result = run()
    finally:
        handle.remove()
    assert len(shapes) == 1
    return result, shapes[0]


def _check_same_loss_and_gradients(model, batch, labels):
    from pefomed.train.loss import (answer_only_loss_sum, loss_positions, micro_batch_loss_sum,
                                    supports_logits_to_keep, token_loss_sum)

    assert supports_logits_to_keep(model)
    torch.manual_seed(0)
    model.zero_grad()
    full, full_shape = _head_rows(model, lambda: token_loss_sum(model(**batch).logits, labels))
    full.backward()
    full_grads = _grads(model)

    model.zero_grad()
    (part, logits), part_shape = _head_rows(model, lambda: answer_only_loss_sum(model, batch, labels))
    part.backward()
    part_grads = _grads(model)

    keep = loss_positions(labels)
    assert part_shape[1] == keep.numel() == logits.shape[1]
    assert part_shape[1] < full_shape[1], "the LM head must run at fewer positions"
    assert part_shape[:1] == full_shape[:1] and part_shape[2] == full_shape[2]
    # the answers are supervised: the union covers every answer token
    assert int(((labels[:, 1:] != -100).any(0)).sum()) == keep.numel()

    assert torch.allclose(part, full, rtol=1e-5, atol=1e-5), (part.item(), full.item())
    assert full_grads.keys() == part_grads.keys() and full_grads
    for name, grad in full_grads.items():
        assert torch.allclose(part_grads[name], grad, rtol=1e-5, atol=1e-5), name
    # the loop's entry point takes the answer-only path by default, the full one when asked
    model.zero_grad()
    _, shape = _head_rows(model, lambda: micro_batch_loss_sum(model, batch, labels))
    assert shape == part_shape
    _, shape = _head_rows(model, lambda: micro_batch_loss_sum(model, batch, labels, answer_only=False))
    assert shape == full_shape


@pytest.mark.parametrize("family", FAMILIES)
def test_same_loss_and_gradients_with_fewer_logits(family, data_dir, tmp_path):
    from pefomed.models.hf import load_pretrained
    from pefomed.models.peft_methods import apply_method
    from pefomed.recipe import MethodSection, ModelSection

    model_dir = BUILDERS[family](tmp_path / family)
    bundle = load_pretrained(str(model_dir), ModelSection(kind="hf", name_or_path=str(model_dir)))
    text_config = bundle.model.config.get_text_config()
    if family in ("gemma3", "paligemma"):
        # Gemma's final logit softcapping is applied after the head: elementwise, so it must
        # commute with keeping positions (PaliGemma applies it when set)
        text_config.final_logit_softcapping = 2.0
    model = apply_method(bundle.model, MethodSection(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    model.train()
    batch, labels = _batch(bundle.processor, data_dir)
    _check_same_loss_and_gradients(model, batch, labels)


def test_prompt_tuning_virtual_tokens_are_skipped(data_dir, tmp_path):
    """Prompt tuning prepends virtual tokens: the kept positions count from the end of the sequence."""
    from pefomed.models.hf import load_pretrained
    from pefomed.models.peft_methods import apply_method
    from pefomed.recipe import MethodSection, ModelSection

    model_dir = BUILDERS["llava"](tmp_path / "llava")
    bundle = load_pretrained(str(model_dir), ModelSection(kind="hf", name_or_path=str(model_dir)))
    model = apply_method(bundle.model, MethodSection(name="prompt", num_virtual_tokens=5))
    model.train()
    batch, labels = _batch(bundle.processor, data_dir)
    _check_same_loss_and_gradients(model, batch, labels)


def test_composed_model(data_dir, tmp_path):
    from composed_parts import build_parts, composed_overrides

    from pefomed.models.loader import load_base
    from pefomed.models.peft_methods import apply_method
    from pefomed.recipe import MethodSection, load_recipe

    recipe = load_recipe("tiny-demo", composed_overrides(*build_parts(tmp_path / "parts")))
    torch.manual_seed(0)
    bundle = load_base("composed", recipe.model)
    model = apply_method(bundle.model, MethodSection(r=4, alpha=8, dropout=0.0))
    model.train()
    batch, labels = _batch(bundle.processor, data_dir)
    _check_same_loss_and_gradients(model, batch, labels)


def test_a_fully_masked_micro_batch_still_runs_the_head():
    """A blank-image padding micro-batch has no answer tokens; one position keeps the LM head in
    the graph (every process runs the same modules under ZeRO-3) and its loss is zero."""
    from pefomed.train.loss import loss_positions

    labels = torch.full((2, 7), -100)
    assert loss_positions(labels).tolist() == [5]
    labels[1, 3:5] = 4
    assert loss_positions(labels).tolist() == [2, 3]
