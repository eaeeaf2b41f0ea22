"""One reader per raw dataset layout, registered by format name.

A reader turns a dataset exactly as it ships into `SourceSplits`: samples per split whose
`images` are absolute paths inside the source. `pefomed.data.prepare` then checks the images,
copies or converts them into DATA_DIR and writes the split files and manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pefomed.errors import UserError
from pefomed.options.prepare import PrepareOptions  # noqa: F401 (the readers' options, declared once)
from pefomed.records import Sample


@dataclass
class SourceSplits:
    """What a reader returns: samples per split (images as absolute paths) and notes for the manifest."""

    splits: dict[str, list[Sample]]
    notes: dict[str, object] = field(default_factory=dict)
    # samples the reader itself dropped (only with --skip-bad): {"id", "reason"}
    skipped: list[dict[str, str]] = field(default_factory=list)
    # folder that image paths are checked against: nothing may escape it
    root: Path | None = None
    # images that ship inside the annotation files (parquet bytes): name -> bytes. Samples refer
    # to them as EMBEDDED + name; prepare writes them to DATA_DIR/images/<name>.
    embedded: dict[str, bytes] = field(default_factory=dict)


EMBEDDED = "embedded:"


Reader = Callable[[Path, PrepareOptions], SourceSplits]
_READERS: dict[str, Reader] = {}


def register(name: str):
    def wrap(fn: Reader) -> Reader:
        _READERS[name] = fn
        return fn
    return wrap


def get_reader(name: str) -> Reader:
    _load_all()
    if name not in _READERS:
        raise UserError(f"unknown format {name!r}; known formats: {', '.join(sorted(_READERS))}")
    return _READERS[name]


def format_names() -> list[str]:
    _load_all()
    return sorted(_READERS)


def _load_all() -> None:
    # Importing the modules registers their readers.
    from pefomed.data.formats import (captions, data_rad, generic, hf_parquet, llava_med, openi,  # noqa: F401
                                      pathvqa, pmc_vqa, r2gen, roco, slake, vqa_rad)
