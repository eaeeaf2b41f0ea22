"""`pefomed export RUN_DIR --out DIR [--merge] [--dtype auto|fp32|bf16|fp16]`."""

from __future__ import annotations


import typer

from pefomed.cli import declared

EXAMPLE = """
Examples:

  pefomed export runs/demo --merge --out exports/demo-merged   (a plain transformers checkpoint)

  pefomed export runs/demo --out exports/demo-adapter          (adapter + processor + README)

  pefomed export runs/demo/best --merge --out exports/demo-best (the best evaluation's weights)
"""


def register(app: typer.Typer) -> None:
    from pefomed.options.export import ExportCommand

    def export(command: ExportCommand):
        from pefomed.console import console
        from pefomed.export.run import describe, export_run

        written = export_run(command.run_dir, command.out, merge=command.merge, dtype=command.dtype,
                             trust_remote_code=command.trust_remote_code)
        console.print(describe(written))

    declared.register(app, "export", ExportCommand, export,
                      help="Write a trained run as a folder that loads without pefomed." + EXAMPLE)
