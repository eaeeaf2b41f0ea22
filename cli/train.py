"""`pefomed train RECIPE.yaml [--data DATA_DIR] [--out RUN_DIR] [section.key=value ...]`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

EXAMPLE = """
Examples:

  pefomed train tiny-demo --data prepared/vqa-rad --out runs/demo      (a built-in recipe, by name)

  pefomed train my.yaml --data prepared/vqa-rad train.lr=3e-5 method.r=16

  pefomed train --resume runs/demo

  pefomed train stage1-mix.yaml --out runs/stage1      (the recipe's data.mix lists several DATA_DIRs with ratios)

Several processes: deepspeed --num_gpus 8 --module pefomed.cli.app train my.yaml --data ... --out ...
"""


def register(app: typer.Typer) -> None:
    @app.command(help="Fine-tune a vision-language model with DeepSpeed ZeRO and a PEFT method." + EXAMPLE)
    def train(
        recipe: Optional[str] = typer.Argument(None, help="Recipe YAML file, or a built-in name such as tiny-demo."),
        overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides, e.g. train.lr=3e-5."),
        data: Optional[Path] = typer.Option(None, "--data", help="DATA_DIR written by `pefomed prepare` (not with a recipe's data.mix)."),
        out: Optional[Path] = typer.Option(None, "--out", help="RUN_DIR to write (default runs/<recipe name>)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this RUN_DIR from its last checkpoint."),
    ):
        from pefomed.train.run import start_or_resume

        start_or_resume(recipe, overrides or [], data=data, out=out, resume=resume)
