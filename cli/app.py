"""Entry point: `pefomed COMMAND ...`. Each command lives in its own module and only parses
arguments; user mistakes (pefomed.errors.UserError) become one message and exit code 2."""

from __future__ import annotations

import os
import sys

import click
import typer

from pefomed.console import console
from pefomed.errors import UserError

app = typer.Typer(
    name="pefomed",
    help="Medical vision-language fine-tuning: prepare -> train -> infer -> score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
          local_rank: int = typer.Option(None, "--local_rank", "--local-rank", hidden=True,
                                         help="Set by the deepspeed launcher, which puts it before the command.")):
    if debug:
        os.environ["PEFOMED_DEBUG"] = "1"


def _register() -> None:
    from pefomed.cli import demo, export, infer, prepare, score, train

    for module in (prepare, train, infer, score, export, demo):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (console script: sys.exit(main()))."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("PEFOMED_DEBUG") == "1"
    try:
        app(args=args, prog_name="pefomed", standalone_mode=False)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        console.print("[red]aborted[/]")
        return 130
    except UserError as exc:
        if debug:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: outputs written so far are complete files; partial ones were discarded")
        return 130


if __name__ == "__main__":  # python -m pefomed.cli.app
    sys.exit(main())
