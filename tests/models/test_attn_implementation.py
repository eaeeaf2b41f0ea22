"""model.attn_implementation reaches every part of every model kind, and a kernel that cannot run
here is a clear error before any weights load."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "composed"))
from tiny_families import BUILDERS  # noqa: E402


def _kernels(model) -> set[str]:
    """The attention implementation of the model and of every sub-model's config."""
    found = {model.config._attn_implementation}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            found.add(config._attn_implementation)
    return found


@pytest.mark.parametrize("family", ["llava", "gemma3", "qwen2_5_vl"])
def test_every_part_of_an_hf_family_gets_the_kernel(family, tmp_path):
    from pefomed.models.hf import load_pretrained
    from pefomed.recipe import ModelSection

    model_dir = BUILDERS[family](tmp_path / family)
    logits = {}
    for kernel in ("eager", "sdpa"):
        bundle = load_pretrained(str(model_dir), ModelSection(kind="hf", name_or_path=str(model_dir),
                                                              attn_implementation=kernel))
        assert _kernels(bundle.model) == {kernel}
        ids = torch.tensor([[5, 6, 7, 8, 9]])
        with torch.no_grad():
            logits[kernel] = bundle.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    # the same maths either way (text only: no image needed)
    assert torch.allclose(logits["eager"], logits["sdpa"], atol=1e-5)


def test_composed_parts_get_the_kernel(tmp_path):
    from composed_parts import build_parts, composed_overrides

    from pefomed.models.loader import load_base
    from pefomed.recipe import load_recipe

    recipe = load_recipe("tiny-demo", [*composed_overrides(*build_parts(tmp_path)), "model.attn_implementation=eager"])
    bundle = load_base("composed", recipe.model)
    assert bundle.model.vision_tower.config._attn_implementation == "eager"
    assert bundle.model.language_model.config._attn_implementation == "eager"


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available(),
                    reason="flash-attn can run here")
def test_flash_attention_where_it_cannot_run_is_a_clear_error(tmp_path):
    from pefomed.errors import UserError
    from pefomed.models.hf import load_pretrained
    from pefomed.recipe import ModelSection

    section = ModelSection(kind="hf", name_or_path=str(tmp_path), attn_implementation="flash_attention_2")
    with pytest.raises(UserError, match="model.attn_implementation=flash_attention_2 needs"):
        load_pretrained(str(tmp_path), section)  # refused before the (empty) folder is read


def test_an_unknown_kernel_names_the_key():
    from pefomed.errors import UserError
    from pefomed.recipe import load_recipe

    with pytest.raises(UserError, match="model.attn_implementation"):
        load_recipe("tiny-demo", ["model.attn_implementation=flash"])
