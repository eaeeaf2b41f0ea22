"""`pefomed infer SOURCE (--data DATA_DIR [--split test] | --images FOLDER [--question ... | --questions FILE]) --out PRED.jsonl`.

Argument parsing only: the options are declared once, in pefomed.options.infer.InferCommand."""

from __future__ import annotations

import typer

from pefomed.cli import declared

EXAMPLE = """
Examples:

  pefomed infer runs/demo --data prepared/vqa-rad --split test --out runs/demo/pred.jsonl

  pefomed infer runs/demo/best --data prepared/vqa-rad --split test --out best.jsonl

  pefomed infer path/to/Qwen2.5-VL-3B-Instruct --data prepared/vqa-rad --out zero-shot.jsonl --template "{question} Answer with a single word or phrase."

  pefomed infer runs/demo --images my_xrays/ --question "Is there a pleural effusion?" --out pred.jsonl

  pefomed infer runs/demo --images my_xrays/ --out reports.jsonl   (the run's report prompt)

  pefomed infer runs/demo --images my_xrays/ --questions questions.csv --out pred.jsonl   (columns image,question[,id,reference])

  pefomed infer runs/demo --images ct_folders/ --series-frames 3 --question "Is there a mass?" --out pred.jsonl   (each DICOM series or NIfTI volume: 3 slices)

  pefomed infer runs/demo --data prepared/vqa-rad --batch-size auto --workers 4 --out pred.jsonl

  pefomed infer runs/demo --data prepared/vqa-rad --image-ablation shuffled --image-ablation-seed 1 --out shuffled.jsonl

  torchrun --nproc_per_node 4 -m pefomed.cli.app infer runs/demo --data prepared/vqa-rad --out pred.jsonl   (data-parallel)
"""


def register(app: typer.Typer) -> None:
    from pefomed.options.infer import InferCommand

    def infer(command: InferCommand):
        from pefomed.console import console
        from pefomed.infer.run import infer as run_infer
        from pefomed.infer.shards import process_shard

        written = run_infer(command.source, command.out, data=command.data, split=command.split,
                            images=command.images, question=command.question, options=command.options,
                            questions=command.questions)
        if process_shard()[0] == 0:  # under a launcher, rank 0 writes the merged file
            console.print(f"predictions: {written}")

    declared.register(app, "infer", InferCommand, infer, help="Generate answers or reports with a trained run or a "
                                                              "base model (zero-shot)." + EXAMPLE)
