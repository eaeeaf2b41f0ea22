"""Load what `pefomed train` wrote in RUN_DIR: recipe, base model, processor and adapter."""

from __future__ import annotations

from pathlib import Path

from pefomed.errors import UserError
from pefomed.models.loader import ModelBundle, load_base, materialize_base
from pefomed.recipe import Recipe, load_recipe


def check_run_dir(run_dir: str | Path) -> None:
    """Cheap checks before any model is loaded, so a wrong path fails at once."""
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise UserError(f"{run_dir}: not a run folder (no recipe.yaml); pass the --out folder of `pefomed train`")
    if not (run_dir / "adapter" / "adapter_config.json").is_file() and not (run_dir / "weights" / "model.safetensors").is_file():
        raise UserError(f"{run_dir}: the run has no trained weights yet (training did not finish?); "
                        f"continue it with `pefomed train --resume {run_dir}`")


def load_run(run_dir: str | Path, precision: str | None = None) -> tuple[Recipe, ModelBundle]:
    import torch
    from peft import PeftModel

    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    recipe = load_recipe(run_dir / "recipe.yaml")
    precision = precision or ("fp32" if not torch.cuda.is_available() else recipe.train.precision)
    bundle = load_base(materialize_base(recipe.model, run_dir), recipe.model, precision)
    if (run_dir / "processor").is_dir():
        from transformers import AutoProcessor

        bundle.processor = AutoProcessor.from_pretrained(run_dir / "processor")
    if (run_dir / "adapter" / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(bundle.model, run_dir / "adapter")
    else:  # projector / full: trained parameters under the base model's own names
        model = bundle.model
        load_trained_weights(model, run_dir / "weights" / "model.safetensors")
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    bundle.model = model
    return recipe, bundle


def load_trained_weights(model, path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(path)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise UserError(f"{path}: {len(result.unexpected_keys)} weights do not fit the base model "
                        f"(e.g. {result.unexpected_keys[0]}); was the base model changed after training?")
