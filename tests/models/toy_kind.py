"""A model kind from outside pefomed, as another package would write one: this module is the
whole kind (its recipe section and its loader), and one entry point registers it
(tests/models/test_kind_plugin.py declares `pefomed.model_kinds: toy = toy_kind:TOY`).

`model.kind: toy` builds the tiny LLaVA with its own two keys, model.toy.layers and
model.toy.seed, into RUN_DIR/toy_base, and loads it like any transformers folder.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pefomed.models.kinds import ModelKind, register
from pefomed.recipe import RecipeSection


class ToyConfig(RecipeSection):
    layers: int = Field(1, gt=0, le=4, description="transformer layers of the toy LLM")
    seed: int = Field(3, ge=0, le=1000, description="torch.manual_seed of the build")


def _materialize(section, run_dir: Path) -> str:
    from pefomed.models.tiny import TinyConfig, build_tiny

    target = Path(run_dir) / "toy_base"
    if not (target / "config.json").is_file():
        build_tiny(TinyConfig(text_layers=section.toy.layers, seed=section.toy.seed), target)
    return str(target)


def _load(source: str, section, precision: str = "fp32"):
    from pefomed.models.hf import load_pretrained

    return load_pretrained(source, section, precision)


TOY = register(ModelKind(name="toy", check=lambda section: None, materialize=_materialize, load=_load,
                         describe=lambda section: f"the toy model ({section.toy.layers} layers)", ships_base=True,
                         keys={"toy": (ToyConfig, Field(default_factory=ToyConfig, description="the toy kind's sizes"))}))
