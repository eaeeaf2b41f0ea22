"""Every command's options, declared once (a foundation package: no stage imports it back).

One module per command holds its Options class (pefomed.options.declare): the CLI's signature, the
argv `pefomed study` builds for a cell, the checks and the flag spellings in messages all come from
it. COMMANDS maps each command to its class; `command_line` spells a command for a message that
tells the user to run it.
"""

from __future__ import annotations

import importlib
from typing import Any

# command -> "module:class" (imported on demand: declaring `pefomed --help` stays light)
COMMANDS = {
    "prepare": "pefomed.options.prepare:PrepareCommand",
    "train": "pefomed.options.train:TrainCommand",
    "infer": "pefomed.options.infer:InferCommand",
    "score": "pefomed.options.score:ScoreCommand",
    "export": "pefomed.options.export:ExportCommand",
    "import": "pefomed.options.import_checkpoint:ImportCommand",
    "study": "pefomed.options.study:StudyCommand",
    "demo": "pefomed.options.demo:DemoCommand",
}


def command_class(command: str) -> type:
    module, _, name = COMMANDS[command].partition(":")
    return getattr(importlib.import_module(module), name)


def flag_of(command: str, key: str, negated: bool = False) -> str:
    """The flag `key` has in `command` (`flag_of("prepare", "overwrite")` -> "--overwrite";
    `flag_of("score", "clinical", negated=True)` -> "--no-clinical")."""
    declared = command_class(command).declared(key)
    return declared.negated_flag if negated else declared.flag


def command_line(command: str, *positionals: Any, **options: Any) -> str:
    """A command for a message, flags spelled from the declaration:
    `command_line("train", resume="RUN_DIR")` -> "`pefomed train --resume RUN_DIR`"; True gives the
    bare flag, a value its text (a placeholder such as "RUN_DIR" is text too)."""
    cls = command_class(command)
    parts = ["pefomed", command, *map(str, positionals)]
    for key, value in options.items():
        flag = cls.flag(key)
        parts += [flag] if value is True else [flag, str(value)]
    return "`" + " ".join(parts) + "`"
