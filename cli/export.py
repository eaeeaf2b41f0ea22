"""`pefomed export RUN_DIR --out DIR [--merge] [--dtype auto|fp32|bf16|fp16]`."""

from __future__ import annotations

from pathlib import Path

import typer

EXAMPLE = """
Examples:

  pefomed export runs/demo --merge --out exports/demo-merged   (a plain transformers checkpoint)

  pefomed export runs/demo --out exports/demo-adapter          (adapter + processor + README)

  pefomed export runs/demo/best --merge --out exports/demo-best (the best evaluation's weights)
"""


def register(app: typer.Typer) -> None:
    @app.command(help="Write a trained run as a folder that loads without pefomed." + EXAMPLE)
    def export(
        run_dir: Path = typer.Argument(..., help="RUN_DIR written by `pefomed train` (or RUN_DIR/best)."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder to create (must not exist or be empty)."),
        merge: bool = typer.Option(False, "--merge", help="Merge the adapter and projector into the base weights."),
        dtype: str = typer.Option("auto", "--dtype",
                                  help="Merged weights dtype: auto (the base checkpoint's), fp32, bf16 or fp16."),
        trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow Python code shipped with the "
                                               "model to run (needed each time; never taken from a RUN_DIR)."),
    ):
        from pefomed.console import console
        from pefomed.export.run import describe, export_run

        written = export_run(run_dir, out, merge=merge, dtype=dtype, trust_remote_code=trust_remote_code)
        console.print(describe(written))
