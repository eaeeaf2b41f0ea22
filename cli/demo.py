"""`pefomed demo [--out DIR]`."""

from __future__ import annotations


import typer

from pefomed.cli import declared

EXAMPLE = """
Example:

  pefomed demo --out demo-out
"""


def register(app: typer.Typer) -> None:
    from pefomed.options.demo import DemoCommand

    def demo(command: DemoCommand):
        from pefomed.demo import run_demo

        run_demo(command.out, command.overrides)

    declared.register(app, "demo", DemoCommand, demo,
                      help="Run prepare -> train -> infer -> score on the embedded default (tiny model, bundled "
                           "VQA-RAD subset); nothing is downloaded." + EXAMPLE)
