"""Where a model comes from, for train, infer, export and study alike.

A model source is one of:
- a RUN_DIR written by `pefomed train` (or its best/ folder): base model + trained weights;
- a model folder (config.json + processor files) or a hub id, never trained here: loaded with
  model.kind `hf` (any family AutoModelForImageTextToText supports): the zero-shot baseline;
- a recipe (a YAML file or a built-in name such as tiny-demo): its model section, untrained
  (kind tiny, hf or composed), with its prompts.

`resolve_source` decides which from the text alone (cheap, before any model loads), and
`load_source` returns the recipe that describes it (the prompts infer uses) and the model.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pefomed.errors import UserError
from pefomed.models.bundle import ModelBundle, looks_local
from pefomed.models.loader import check_model_source, load_base, materialize_base
from pefomed.models.run_dir import check_remote_code, is_run_dir, load_run, open_run
from pefomed.options import command_line
from pefomed.recipe import ModelSection, Recipe, builtin_recipe_exists, load_recipe

KINDS = ("run", "model", "recipe")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # run | model | recipe
    text: str  # as the user gave it

    def describe(self) -> dict:
        path = Path(self.text).expanduser()
        # a local path is recorded absolute, so a study can tell two sources apart wherever it ran from
        return {"kind": self.kind, "source": str(path.resolve()) if path.exists() else self.text}


def resolve_source(text: str) -> ModelSource:
    path = Path(text).expanduser()
    if is_run_dir(path):
        open_run(path)  # a run without trained weights fails here, with what to do about it
        return ModelSource("run", text)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("model", text)
        raise UserError(f"{text}: not a run folder (no recipe.yaml) nor a model folder (no config.json)",
                        hint=f"pass the RUN_DIR written by {command_line('train', out='RUN_DIR')}, or a folder "
                             "holding a model's config.json")
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return ModelSource("recipe", text)
    if path.suffix == "" and builtin_recipe_exists(text):
        return ModelSource("recipe", text)
    if not looks_local(text):
        return ModelSource("model", text)  # org/name: a hub id
    raise UserError(f"{text}: no such RUN_DIR, model folder, recipe file or built-in recipe",
                    hint=f"give the RUN_DIR written by {command_line('train', out='RUN_DIR')}, a local model "
                         "folder, an org/name hub id, or a recipe")


def _device() -> str | None:
    import torch

    return "cuda" if torch.cuda.is_available() else None


def load_source(source: ModelSource, precision: str | None = None,
                trust_remote_code: bool = False) -> tuple[Recipe, ModelBundle]:
    """The recipe describing the source (prompts, infer defaults) and its model, in eval mode."""
    import torch

    if source.kind == "run":
        return load_run(source.text, precision=precision, trust_remote_code=trust_remote_code)
    if source.kind == "model":
        recipe = Recipe(model=ModelSection(kind="hf", name_or_path=source.text, trust_remote_code=trust_remote_code))
    else:
        recipe = load_recipe(source.text)
        check_remote_code(recipe, Path(source.text), trust_remote_code)
    check_model_source(recipe.model)
    precision = precision or ("fp32" if not torch.cuda.is_available() else recipe.train.precision)
    # a kind that builds its base (tiny) builds it into a folder of its own for this process
    workdir = Path(tempfile.mkdtemp(prefix="pefomed-base-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    bundle = load_base(materialize_base(recipe.model, workdir), recipe.model, precision)
    bundle.model.eval()
    if _device():
        bundle.model.to(_device())
    return recipe, bundle
