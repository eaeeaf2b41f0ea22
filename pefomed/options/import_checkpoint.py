"""`pefomed import`'s options, declared once (pefomed.options.declare)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.options.declare import Options, option

IMPORT_PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(kw_only=True)
class ImportCommand(Options):
    """`pefomed import CHECKPOINT.pth RECIPE [section.key=value ...] --out RUN_DIR`."""

    checkpoint: Path = option(help="The released .pth file (read with torch.load(weights_only=True): tensors "
                                   "only).", positional=True)
    recipe: str = option(help="Recipe YAML (model.kind composed, method lora) describing the model.",
                         positional=True)
    overrides: list[str] = option(help="section.key=value overrides, e.g. method.alpha=16.", positional=True,
                                  factory=list)
    out: Path = option(help="RUN_DIR to create (must not exist or be empty).", short="-o")
    precision: str = option("fp32", "dtype of the saved adapter: fp32 (the released tensors unchanged), bf16 or "
                                    "fp16.", choices=IMPORT_PRECISIONS)
