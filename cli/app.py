"""Entry point: `pefomed COMMAND ...`. Each command lives in its own module and only parses
arguments; user mistakes (pefomed.errors.UserError) become one message and exit code 2."""

from __future__ import annotations

import os
import sys

import click
import typer
from rich.text import Text

# typer >= 0.24 vendors click as `typer._click`: its usage errors are not `click.exceptions` any more.
# Catch the classes of both, whichever this installation has, so a typo in an option is one line
# and exit 2 on every typer/click version within the bounds declared in pyproject.toml.
try:  # pragma: no cover - depends on the installed typer
    from typer import _click as _vendored_click
except ImportError:  # older typer uses click itself
    _vendored_click = None
_CLICKS = [click] + ([_vendored_click] if _vendored_click is not None else [])


def _classes(name: str) -> tuple[type, ...]:
    """`name` (ClickException, Exit, Abort) from click, vendored click and typer, where each has it."""
    found = [getattr(m, name, None) or getattr(getattr(m, "exceptions", None), name, None)
             for m in (*_CLICKS, typer)]
    return tuple(dict.fromkeys(c for c in found if isinstance(c, type)))


CLICK_ERRORS = _classes("ClickException")
CLICK_EXITS = _classes("Exit")
CLICK_ABORTS = _classes("Abort")

from pefomed.console import console, interrupt_explained
from pefomed.errors import UserError

app = typer.Typer(
    name="pefomed",
    help="Medical vision-language fine-tuning: prepare -> train -> infer -> score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain help: examples keep their lines and indentation, and flags read `--merge`, not `--merge <bool>`
    rich_markup_mode=None,
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
          local_rank: int = typer.Option(None, "--local_rank", "--local-rank", hidden=True,
                                         help="Set by the deepspeed launcher, which puts it before the command (declared "
                                              "once, here; the process reads LOCAL_RANK from the environment).")):
    if debug:
        os.environ["PEFOMED_DEBUG"] = "1"


def _register() -> None:
    from pefomed.cli import demo, export, import_cmd, infer, prepare, score, study, train

    for module in (prepare, train, infer, score, export, import_cmd, demo, study):
        module.register(app)
    for info in app.registered_commands:
        # the command list shows each command's first paragraph, never its "Examples:" heading
        summary, _, examples = (info.help or "").partition("Example")
        info.short_help = info.short_help or summary.strip()
        if examples:
            # an examples paragraph of its own, each example kept on its line ("\b": click must not rewrap)
            heading, _, body = ("Example" + examples).partition("\n")
            paragraphs = [para.strip("\n") for para in body.split("\n\n") if para.strip()]
            info.help = summary.rstrip() + "\n\n" + heading.strip() + "\n\n" + "\n\n".join(
                "\b\n" + para for para in paragraphs)


_register()


def _error(message: str) -> None:
    # Text, not markup: a message quoting the user's input ("[bold]" in a question) prints as typed
    console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)


def _command_of(args: list[str]) -> list[str]:
    """The subcommand named in `args`, if any (for errors raised before click made a context)."""
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    return [a for a in args if a in commands][:1]


def _flags_of(args: list[str]) -> dict[str, str]:
    """{parameter name: its long flag} of the command in `args` (`num_beams` -> `--num-beams`):
    how a key named by a library error is spelled for the user who typed this command."""
    name = _command_of(args)
    if not name:
        return {}
    command = typer.main.get_command(app).commands.get(name[0])
    return {param.name: max(param.opts, key=len) for param in getattr(command, "params", ())
            if param.name and any(opt.startswith("--") for opt in param.opts)}


def _interrupted() -> int:
    if interrupt_explained():  # the command said what it kept
        return 130
    console.print("[red]interrupted[/]: every output written so far is a complete file; partial files were "
                  "left as .partial (infer resumes from them) or discarded; `pefomed train --resume RUN_DIR` "
                  "continues a run from its last checkpoint")
    return 130


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (console script: sys.exit(main())).

    Exit codes: 0 done, 2 a user mistake (bad option, missing file, malformed input: one message,
    no traceback), 130 interrupted (Ctrl-C), 1 a bug (with its traceback).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("PEFOMED_DEBUG") == "1"
    try:
        # standalone_mode=False: typer returns an Exit's code (e.g. 130 for Ctrl-C) instead of exiting
        result = app(args=args, prog_name="pefomed", standalone_mode=False)
    except CLICK_EXITS as exc:
        return exc.exit_code
    except CLICK_ERRORS as exc:
        # a usage error (unknown option or command, missing argument, bad value): click's own message
        # with the usage line, exit 2 (click's code for usage errors)
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `pefomed` or `pefomed infer`: the help
            exc.show()
            return 2
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else " ".join(["pefomed", *_command_of(args)])
        where = f"; see `{command} --help`"
        _error(f"{exc.format_message().rstrip('.')}{where}")
        return 2
    except CLICK_ABORTS:
        return _interrupted()
    except UserError as exc:
        if debug:
            raise
        _error(exc.naming_flags(_flags_of(args)))
        return 2
    except KeyboardInterrupt:
        return _interrupted()
    if isinstance(result, int) and not isinstance(result, bool):
        return _interrupted() if result == 130 else result
    return 0


if __name__ == "__main__":  # python -m pefomed.cli.app
    sys.exit(main())
