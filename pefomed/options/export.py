"""`pefomed export`'s options, declared once (pefomed.options.declare)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.options.declare import Options, option

EXPORT_DTYPES = ("auto", "fp32", "bf16", "fp16")


@dataclass(kw_only=True)
class ExportCommand(Options):
    """`pefomed export RUN_DIR --out DIR [--merge] [--dtype auto|fp32|bf16|fp16]`."""

    run_dir: Path = option(help="RUN_DIR written by `pefomed train` (or RUN_DIR/best).", positional=True)
    out: Path = option(help="Folder to create (must not exist or be empty).", short="-o")
    merge: bool = option(False, "Merge the adapter and projector into the base weights.")
    dtype: str = option("auto", "Merged weights dtype: auto (the base checkpoint's), fp32, bf16 or fp16; with "
                                "`merge` only.", choices=EXPORT_DTYPES)
    trust_remote_code: bool = option(False, "Allow Python code shipped with the model to run (needed each time; "
                                            "never taken from a RUN_DIR).")
