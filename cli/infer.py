"""`pefomed infer RUN_DIR (--data DATA_DIR [--split test] | --images FOLDER [--question ...]) --out PRED.jsonl`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXAMPLE = """
Examples:

  pefomed infer runs/demo --data prepared/vqa-rad --split test --out runs/demo/pred.jsonl

  pefomed infer runs/demo --images my_xrays/ --question "Is there a pleural effusion?" --out pred.jsonl

  pefomed infer runs/demo --images my_xrays/ --out reports.jsonl   (the run's report prompt)
"""


def register(app: typer.Typer) -> None:
    @app.command(help="Generate answers or reports with a trained run." + EXAMPLE)
    def infer(
        run_dir: Path = typer.Argument(..., help="RUN_DIR written by `pefomed train`."),
        out: Path = typer.Option(..., "--out", "-o", help="PRED.jsonl to write."),
        data: Optional[Path] = typer.Option(None, "--data", help="A prepared DATA_DIR."),
        split: str = typer.Option("test", "--split", help="Split of DATA_DIR to answer."),
        images: Optional[Path] = typer.Option(None, "--images", help="A folder of images (PNG, JPEG, DICOM)."),
        question: Optional[str] = typer.Option(None, "--question", help="Question asked of every image in --images."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Default: the recipe's infer.batch_size."),
        max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Default: the recipe's infer.max_new_tokens."),
    ):
        from pefomed.errors import UserError
        from pefomed.infer.generate import predict
        from pefomed.infer.run import check_run_dir, load_run
        from pefomed.infer.sources import folder_samples, split_samples

        check_run_dir(run_dir)
        if (data is None) == (images is None):
            raise UserError("give exactly one of --data DATA_DIR or --images FOLDER")
        if question is not None and images is None:
            raise UserError("--question goes with --images (a DATA_DIR brings its own questions)")
        samples, root = split_samples(data, split) if data is not None else folder_samples(images, question)
        recipe, bundle = load_run(run_dir)
        predict(samples, root, recipe, bundle, out, batch_size=batch_size, max_new_tokens=max_new_tokens,
                with_references=data is not None)
        from pefomed.console import console

        console.print(f"predictions: {out}")
