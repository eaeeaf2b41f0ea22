"""`pefomed import CHECKPOINT.pth RECIPE [section.key=value ...] --out RUN_DIR`."""

from __future__ import annotations


import typer

from pefomed.cli import declared

EXAMPLE = """
Examples:

  pefomed import pefomed_vqarad.pth pefomed-paper/stage2-vqa-rad --out runs/pefomed-released

  pefomed import minigptv2_checkpoint.pth pefomed-paper/stage1-roco --out runs/minigptv2

  pefomed train pefomed-paper/stage1-roco --data ... train.init_from=runs/minigptv2
"""


def register(app: typer.Typer) -> None:
    from pefomed.options.import_checkpoint import ImportCommand

    def import_checkpoint(command: ImportCommand):
        from pefomed.console import console
        from pefomed.models.released import import_checkpoint as run_import

        written = run_import(command.checkpoint, command.recipe, command.overrides, command.out, command.precision)
        console.print(f"imported {command.checkpoint} into {written} (pefomed infer {written} ...)")

    # "import" is a Python keyword: the function has another name, the command is `pefomed import`
    declared.register(app, "import", ImportCommand, import_checkpoint,
                      help="Turn a released MiniGPT-v2 or PeFoMed checkpoint (.pth: projector + LoRA) into a RUN_DIR "
                           "that infer, export and train.init_from read." + EXAMPLE)
