"""`pefomed demo [--out DIR]`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

EXAMPLE = """
Example:

  pefomed demo --out demo-out
"""


def register(app: typer.Typer) -> None:
    @app.command(help="Run prepare -> train -> infer -> score on the embedded default (tiny model, "
                      "bundled VQA-RAD subset); nothing is downloaded." + EXAMPLE)
    def demo(
        out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Folder for all demo outputs (must be empty)."),
        overrides: Optional[List[str]] = typer.Argument(None, help="Recipe overrides, e.g. train.epochs=1."),
    ):
        from pefomed.demo import run_demo

        run_demo(out, overrides or [])
