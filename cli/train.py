"""`pefomed train RECIPE.yaml [--data DATA_DIR] [--out RUN_DIR] [section.key=value ...]`."""

from __future__ import annotations


import typer

from pefomed.cli import declared

EXAMPLE = """
Examples:

  pefomed train tiny-demo --data prepared/vqa-rad --out runs/demo      (a built-in recipe, by name)

  pefomed train my.yaml --data prepared/vqa-rad train.lr=3e-5 method.r=16

  pefomed train --resume runs/demo

  pefomed train stage1-mix.yaml --out runs/stage1      (the recipe's data.mix lists several DATA_DIRs with ratios)

Several processes: deepspeed --num_gpus 8 --module pefomed.cli.app train my.yaml --data ... --out ...
"""


def register(app: typer.Typer) -> None:
    from pefomed.options.train import TrainCommand

    def train(command: TrainCommand):
        from pefomed.train.run import start_or_resume

        start_or_resume(command.recipe, command.overrides, data=command.data, out=command.out, resume=command.resume)

    declared.register(app, "train", TrainCommand, train,
                      help="Fine-tune a vision-language model with DeepSpeed ZeRO and a PEFT method." + EXAMPLE)
