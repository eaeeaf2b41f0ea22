"""Seeded generators of malformed inputs and the checks every fuzz case must pass.

Each case is built from a valid input by one mutation (a value replaced by a hostile one, a key
removed or repeated, the file cut, re-encoded or filled with garbage, an image replaced by a
bomb or a link out of the tree), drawn from `random.Random(seed)` so that a failing case is
reproduced by its seed alone (the test id prints it).

How many cases run: PEFOMED_FUZZ_CASES per entry point, or PEFOMED_FUZZ_CASES_PREPARE / _SCORE /
_RECIPE / _IMAGES for one (default: the CI share, 680 cases, about 35 s on 2 cores).
`PEFOMED_FUZZ_CASES=5000 pytest tests/robustness -k fuzz` is the long campaign (docs/security.md
records its last result).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any, Callable

CI_CASES = {"prepare": 240, "score": 80, "recipe": 300, "images": 60, "study": 60}
DEEP = "__DEEP_NESTING__"


def cases(entry: str) -> int:
    """How many cases to run for `entry`: PEFOMED_FUZZ_CASES_<ENTRY> (e.g. ..._SCORE), else
    PEFOMED_FUZZ_CASES for every entry point, else the CI share."""
    raw = os.environ.get(f"PEFOMED_FUZZ_CASES_{entry.upper()}") or os.environ.get("PEFOMED_FUZZ_CASES")
    return int(raw) if raw else CI_CASES[entry]


def seeds(entry: str, parts: int = 1) -> list[int]:
    """Seeds for one entry point, spread over `parts` parametrized tests."""
    return list(range(max(1, cases(entry) // parts)))


# ---------------------------------------------------------------- values and JSON documents

LONG = "x" * 200_000
HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 2 ** 70, -(2 ** 63), 1.5e308, 1e-320, 3.7,
    "", " ", "NULL", "nan", "\ud800", "a\udcffb", LONG, "../../../etc/passwd", "/etc/passwd", "a\x00b",
    "\n\r\t", "é漢字🙂", "<image>", "'; DROP TABLE x; --", "{question}", "${HOME}", "%s%n",
    [], [None], [1, 2], ["a", "b"], [[["x"]]], {}, {"a": 1}, {"question": "q"}, DEEP,
    '["a.png", 3]', "CLOSED", "open", "yes", "train", "test", "C:\\Windows\\x.png", "a/" * 3000 + "x.png",
]


def hostile(rng: random.Random) -> Any:
    return rng.choice(HOSTILE_VALUES)


def _containers(doc: Any, path: tuple = ()) -> list[tuple]:
    """Every (container, key) position of a JSON document (dict keys and list indices)."""
    out = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((doc, key))
            out.extend(_containers(value))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out.append((doc, index))
            out.extend(_containers(value))
    return out


def mutate_doc(doc: Any, rng: random.Random) -> tuple[Any, str]:
    """One structural or value mutation of a parsed JSON document (in place); returns a label."""
    positions = _containers(doc)
    if not positions:
        return hostile(rng), "whole document replaced"
    container, key = rng.choice(positions)
    op = rng.randrange(6)
    if op == 0 and isinstance(container, dict):
        del container[key]
        return doc, f"deleted key {key!r}"
    if op == 1 and isinstance(container, list):
        container.append(json.loads(json.dumps(container[key])))  # a duplicate record (and id)
        return doc, "duplicated a list item"
    if op == 2 and isinstance(container, dict):
        container[rng.choice(["", " ", "\ud800", LONG[:300], "extra", "__proto__"])] = hostile(rng)
        return doc, "added a key"
    value = hostile(rng)
    container[key] = value
    return doc, f"{key!r} -> {str(value)[:40]!r}"


def dump_doc(doc: Any) -> str:
    """JSON text of a mutated document; DEEP becomes a 3000-level nested list (past every parser's
    recursion limit), lone surrogates become \\ud800 escapes (ensure_ascii)."""
    text = json.dumps(doc, ensure_ascii=True)
    return text.replace(json.dumps(DEEP), "[" * 3000 + "]" * 3000)


# ---------------------------------------------------------------- bytes of a text file

def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    op = rng.randrange(10)
    if op == 0:
        cut = rng.randrange(len(data) + 1)
        return data[:cut], f"truncated at {cut}"
    if op == 1:
        return b"", "empty"
    if op == 2:
        return data.decode("utf-8", "replace").encode("utf-16"), "UTF-16"
    if op == 3:
        at = rng.randrange(len(data) + 1)
        return data[:at] + b"\xff\xfe\xc3" + data[at:], "invalid UTF-8 bytes"
    if op == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))), "random bytes"
    if op == 5:
        b = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b), "flipped bytes"
    if op == 6:
        return b"\xef\xbb\xbf" + data, "BOM"
    if op == 7:  # the first key written twice: {"qid": 1, "qid": 5, ...}
        return re.sub(rb'("[^"\\]{1,40}":)', rb"\1 1, \1", data, count=1), "duplicate key"
    if op == 8:
        at = rng.randrange(len(data) + 1)
        return data[:at] + b"\x00" * 10 + data[at:], "NUL bytes"
    return data * 2, "doubled"


# ---------------------------------------------------------------- images

def png_header(width: int, height: int, body: bytes = b"") -> bytes:
    """A PNG that declares width x height pixels with (almost) no pixel data: a decompression
    bomb as far as a decoder that trusts the header is concerned."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")


def dicom_without_pixels() -> bytes:
    import io

    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.PatientName = "Fuzz^Case"
    ds.Rows, ds.Columns = 10, 10
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom_huge_header() -> bytes:
    """A DICOM whose header declares 60000 x 60000 x 100 frames of 16-bit pixels (none present)."""
    import io

    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = "1.2.3.5"
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 100
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = b"\x00\x00" * 16
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def bad_image_bytes(rng: random.Random, good: bytes) -> tuple[bytes, str]:
    op = rng.randrange(8)
    if op == 0:
        return b"", "empty image"
    if op == 1:
        return good[: rng.randrange(1, max(2, len(good) - 1))], "truncated image"
    if op == 2:
        return png_header(rng.choice([100_000, 70_000, 2 ** 31 - 1]), rng.choice([100_000, 50_000, 1])), "huge-dimension header"
    if op == 3:
        return dicom_without_pixels(), "DICOM without pixel data"
    if op == 4:
        return dicom_huge_header(), "DICOM with a huge header"
    if op == 5:
        return b"this is not an image\n" * 10, "text"
    if op == 6:
        b = bytearray(good)
        for _ in range(20):
            b[rng.randrange(8, len(b))] = rng.randrange(256)
        return bytes(b), "corrupted image"
    return png_header(0, 0), "zero-size header"


def mutate_image_file(root: Path, rng: random.Random, outside: Path) -> str:
    """Replace one image under `root` by a bad one, or by a link pointing out of the tree."""
    images = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
    if not images:
        return "no image to mutate"
    target = rng.choice(images)
    if target.is_symlink():
        return f"{target.name}: already a link"
    if rng.random() < 0.2:
        outside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, outside)
        target.unlink()
        target.symlink_to(outside)
        return f"{target.name} -> symlink outside the source"
    data, label = bad_image_bytes(rng, target.read_bytes())
    target.write_bytes(data)
    return f"{target.name}: {label}"


# ---------------------------------------------------------------- pickles

class Calls:
    """Pickles as a call of `fn(*args)`: a stand-in for a pickle that runs code when loaded."""

    def __init__(self, fn: Callable, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name}")


def plain_loads(data: bytes) -> Any:
    """The harness's own look into a pickle an earlier mutation may have armed: no globals."""
    import io

    return _NoGlobals(io.BytesIO(data)).load()


def shared_list_bomb(levels: int = 60) -> bytes:
    """A few hundred bytes that unpickle to a list holding 2**levels references to one string
    (each level a list of two copies of the level below, kept small by pickle's memo)."""
    node: Any = "x"
    for _ in range(levels):
        node = [node, node]
    return pickle.dumps([{"image": "train_0422", "question": node, "answer": "yes"}], protocol=2)


def self_containing_pickle() -> bytes:
    loop: list = []
    loop.append(loop)
    return pickle.dumps([{"image": "train_0422", "question": loop, "answer": "yes"}])
