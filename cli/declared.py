"""A command's Typer signature, generated from its declared options (pefomed.options).

Each declared field becomes one parameter: a positional argument or a flag (`num_beams` ->
`--num-beams`, booleans `--x` or `--x/--no-x`, lists repeatable); the help text is the declaration's,
with each backticked key spelled as this command's flag. The values the user typed go back into the
Options class, whose own validation runs, so the command line and the library cannot drift apart.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import MISSING
from pathlib import Path
from typing import Callable, List, Optional

import typer


_TYPE_NAMES = {str: "text", int: "integer", float: "float", Path: "path"}


def _help(text: str, flags: dict[str, str]) -> str:
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: flags.get(m.group(1), m.group(0)), text)


def parameters(cls: type) -> list[inspect.Parameter]:
    """One inspect.Parameter (with its typer.Argument or typer.Option) per declared option of `cls`."""
    declared = cls.flat_fields()
    flags = {d.name: d.flag for d in declared if not d.meta["positional"]}
    params = []
    for d in declared:
        annotation = List[d.kind] if d.repeated else d.kind
        required = d.default is MISSING
        # Typer takes None for "not given" of a list or an optional value; the declaration's default applies then
        default = ... if required else (None if d.repeated or d.optional or d.default is None else d.default)
        if d.optional or d.repeated or default is None:
            annotation = Optional[annotation]
        help_text = _help(d.help, flags)
        # a list's metavar is its item's (typer would print "<list[Path]>")
        metavar = d.meta["metavar"] or (f"<{_TYPE_NAMES.get(d.kind, 'text')}>" if d.repeated else None)
        if d.meta["positional"]:
            spec = typer.Argument(default, help=help_text, metavar=d.meta["metavar"] or d.name.upper(),
                                  show_default=False)
        else:
            decls = [f"{d.flag}/{d.negated_flag}" if d.kind is bool and d.negatable else d.flag]
            decls += [d.meta["short"]] if d.meta["short"] else []
            spec = typer.Option(default, *decls, help=help_text, metavar=metavar,
                                show_default=default not in (None, ...) and not isinstance(default, bool))
        params.append(inspect.Parameter(d.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=spec))
    return params


def values_given(cls: type, parsed: dict) -> dict:
    """The parsed values that a user gave (None of a list or an optional flag means "not given")."""
    out = {}
    for d in cls.flat_fields():
        value = parsed.get(d.name)
        if value is None and d.default is not MISSING:
            continue
        out[d.name] = list(value) if d.repeated and value is not None else value
    return out


def register(app: typer.Typer, name: str, cls: type, run: Callable, help: str) -> None:
    """Add `pefomed NAME`: its parameters generated from `cls`, and `run(cls instance)` as its body."""

    def command(**parsed):
        return run(cls.from_flat(values_given(cls, parsed)))

    params = parameters(cls)
    # Typer reads a command's parameters from its signature: give it the declared ones
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = name.replace("-", "_")
    app.command(name=name, help=help)(command)


def reference_markdown() -> str:
    """docs/cli.md's option tables, one per command, from the declarations (tools/cli_reference.py
    writes them; tests/cli/test_declared_options.py fails when the file differs)."""
    from pefomed.options import COMMANDS, command_class

    out = []
    for name in COMMANDS:
        cls = command_class(name)
        declared = cls.flat_fields()
        flags = {d.name: d.flag for d in declared if not d.meta["positional"]}
        out += [f"### pefomed {name}", "", "| argument / flag | key | type | default | what it does |",
                "|---|---|---|---|---|"]
        for d in declared:
            kind = _TYPE_NAMES.get(d.kind, "true/false" if d.kind is bool else "text")
            kind += " (repeatable)" if d.repeated else ""
            shown = d.name.upper() if d.meta["positional"] else (
                f"{d.flag} / {d.negated_flag}" if d.kind is bool and d.negatable
                else d.flag)
            default = "required" if d.default is MISSING else "" if d.default in (None, []) else f"`{d.default}`"
            text = _help(d.help, flags).replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{shown}` | `{d.name}` | {kind} | {default} | {text} |")
        out.append("")
    return "\n".join(out)
