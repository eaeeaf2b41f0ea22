"""`pefomed import CHECKPOINT.pth RECIPE [section.key=value ...] --out RUN_DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

EXAMPLE = """
Examples:

  pefomed import pefomed_vqarad.pth pefomed-paper/stage2-vqa-rad --out runs/pefomed-released

  pefomed import minigptv2_checkpoint.pth pefomed-paper/stage1-roco --out runs/minigptv2

  pefomed train pefomed-paper/stage1-roco --data ... train.init_from=runs/minigptv2
"""


def register(app: typer.Typer) -> None:
    # "import" is a Python keyword: the function has another name, the command is `pefomed import`
    @app.command(name="import", help="Turn a released MiniGPT-v2 or PeFoMed checkpoint (.pth: projector + LoRA) into "
                                     "a RUN_DIR that infer, export and train.init_from read." + EXAMPLE)
    def import_cmd(
        checkpoint: Path = typer.Argument(..., help="The released .pth file (read with torch.load(weights_only=True): tensors only)."),
        recipe: str = typer.Argument(..., help="Recipe YAML (model.kind composed, method lora) describing the model."),
        overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides, e.g. method.alpha=16."),
        out: Path = typer.Option(..., "--out", "-o", help="RUN_DIR to create (must not exist or be empty)."),
        precision: str = typer.Option("fp32", "--precision", help="dtype of the saved adapter: fp32 (the released "
                                      "tensors unchanged), bf16 or fp16."),
    ):
        from pefomed.console import console
        from pefomed.models.released import import_checkpoint

        written = import_checkpoint(checkpoint, recipe, overrides or [], out, precision)
        console.print(f"imported {checkpoint} into {written} (pefomed infer {written} ...)")
