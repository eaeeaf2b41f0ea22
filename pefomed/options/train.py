"""`pefomed train`'s options, declared once (pefomed.options.declare). The training settings
themselves are recipe keys (pefomed.recipe), given as `section.key=value` overrides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.options.declare import Options, option


@dataclass(kw_only=True)
class TrainCommand(Options):
    """`pefomed train RECIPE.yaml [--data DATA_DIR] [--out RUN_DIR] [section.key=value ...]`."""

    recipe: str | None = option(None, "Recipe YAML file, or a built-in name such as tiny-demo.", positional=True)
    overrides: list[str] = option(help="section.key=value overrides, e.g. train.lr=3e-5.", positional=True,
                                  factory=list)
    data: Path | None = option(None, "DATA_DIR written by `pefomed prepare` (not with a recipe's data.mix).")
    out: Path | None = option(None, "RUN_DIR to write (default runs/<recipe name>).")
    resume: Path | None = option(None, "Continue the run in this RUN_DIR from its last checkpoint.")
