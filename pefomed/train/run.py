"""What `pefomed train` does before the loop: resolve the recipe, the data and RUN_DIR."""

from __future__ import annotations

import os
from pathlib import Path

from pefomed.console import console
from pefomed.errors import UserError
from pefomed.models.run_dir import RECIPE_FILE, exclusive, holds_a_run
from pefomed.options import command_line
from pefomed.recipe import load_recipe


def start_or_resume(recipe_path: str | None, overrides: list[str], data: Path | None, out: Path | None,
                    resume: Path | None) -> Path:
    from pefomed.train.loop import check_inputs, train

    if resume is not None:
        if recipe_path is not None or overrides:
            # the resolved recipe in RUN_DIR is the run's definition; changing it mid-run breaks resume
            raise UserError("`resume` takes the run's own recipe.yaml; do not pass a recipe or overrides with it")
        recipe = load_recipe(resume / RECIPE_FILE)
        run_dir = resume
    else:
        if recipe_path is None:
            raise UserError("missing RECIPE (a YAML file or a built-in name such as tiny-demo)")
        if recipe_path.count("=") and not Path(recipe_path).exists():
            raise UserError(f"{recipe_path!r} looks like an override; the recipe file comes first")
        recipe = load_recipe(recipe_path, overrides)
        if data is not None:
            if recipe.data.mix is not None:
                raise UserError(f"`data` {data} and the recipe's data.mix both name the training data: a run trains "
                                "on one DATA_DIR or on the mixture in data.mix, not both",
                                hint="drop `data`, or pass data.mix=null to train on `data` alone")
            recipe.data.dir = str(data)
        if recipe.data.dir is not None:
            recipe.data.dir = str(Path(recipe.data.dir).resolve())
        # RUN_DIR/recipe.yaml holds absolute DATA_DIRs: a resumed run reads the same data from anywhere
        for source in recipe.data.mix or []:
            source.dir = str(Path(source.dir).resolve())
        run_dir = out or Path("runs") / Path(recipe_path).stem
        # only the first process checks: the others would find the recipe.yaml it just wrote
        if os.environ.get("RANK", "0") == "0" and holds_a_run(run_dir):
            raise UserError(f"{run_dir} already holds a run; choose another `out`, or continue it with "
                            f"{command_line('train', resume=run_dir)}")
    check_inputs(recipe, run_dir, resume=resume is not None)  # a mistake leaves no RUN_DIR behind
    if os.environ.get("RANK", "0") == "0":
        with exclusive(run_dir):  # the first process of a launch holds RUN_DIR for the whole run
            result = train(recipe, run_dir, resume=resume is not None)
    else:
        result = train(recipe, run_dir, resume=resume is not None)
    console.print(f"trained weights: {result.saved}")
    return result.saved
