"""`pefomed demo`'s options, declared once (pefomed.options.declare)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.options.declare import Options, option


@dataclass(kw_only=True)
class DemoCommand(Options):
    """`pefomed demo [--out DIR] [section.key=value ...]`."""

    overrides: list[str] = option(help="Recipe overrides, e.g. train.epochs=1.", positional=True, factory=list)
    out: Path = option(Path("demo-out"), "Folder for all demo outputs (must be empty).", short="-o")
