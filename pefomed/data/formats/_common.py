"""Small helpers shared by the readers: field cleaning, answer types, seeded splits, CSV/XML/pickle
reading that names the file and line of a problem.
"""

from __future__ import annotations

import csv
import io
import math
import os
import pickle
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable, Iterator

from pefomed.errors import UserError
from pefomed.io import check_unicode, short
from pefomed.records import SPLITS, Sample

# Spellings of "no value" seen in the sources (VQA-RAD's OSF release writes the string "NULL").
NULL_STRINGS = {"", "null", "none", "nan", "n/a"}
YES_NO = {"yes", "no"}
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)

# Folder/file-name words that name a split, across the releases we read.
SPLIT_WORDS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validate": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}


def _kind(value: Any) -> str:
    return "null" if value is None else "true/false" if isinstance(value, bool) else type(value).__name__


def clean(value: Any, where: str = "", key: str = "field") -> str | None:
    """Text of a field, stripped; None for missing values and the "NULL"-style placeholders.

    Numbers become their text (VQA-RAD ids and answers are JSON numbers); a list or an object
    is an error naming the field: str() would turn ["a", "b"] into the text "['a', 'b']".
    """
    if value is None:
        return None
    if isinstance(value, bool):  # `"image_organ": true` is a broken record, not a missing organ
        raise UserError(f"{where or 'a record'}: '{key}' must be text, got true/false {short(value, 60)}")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not isinstance(value, (str, int, float)):
        raise UserError(f"{where or 'a record'}: '{key}' must be text, got {_kind(value)} {short(value, 60)}")
    text = str(value).strip()
    return None if text.lower() in NULL_STRINGS else text


def text_field(value: Any, where: str, key: str, numbers: bool = False) -> str:
    """A required text field (question, caption ...): a string, or with `numbers` an integer or
    finite number kept as its text. null, true/false, lists and objects are errors naming it:
    they must never become the text "None", "True" or "['a', 'b']"."""
    if isinstance(value, str):
        return value.strip()
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and (not isinstance(value, float) or math.isfinite(value)):
        return str(value)
    expected = "text or a number" if numbers else "text"
    raise UserError(f"{where}: '{key}' must be {expected}, got {_kind(value)} {short(value, 60)}")


def id_field(value: Any, where: str, key: str = "id") -> str:
    """An identifier: a non-empty string or an integer, at most 256 characters."""
    text = text_field(value, where, key, numbers=True)
    if not text or len(text) > 256:
        raise UserError(f"{where}: '{key}' must be 1 to 256 characters, got {short(value, 60)}")
    return text


def image_list(value: Any, where: str, key: str = "image") -> list[str]:
    """One image path or a non-empty list of them, each a non-empty string."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        raise UserError(f"{where}: '{key}' must be an image path or a non-empty list of paths, got {short(value, 60)}")
    return [item.strip() for item in items]


def answer_text(value: Any, where: str) -> str:
    """Answers are text, sometimes JSON numbers (VQA-RAD: `2`); anything else is an error."""
    return text_field(value, where, "answer", numbers=True)


def answer_type_of(value: Any, where: str) -> str:
    """"CLOSED", "closed ", "Open" ... -> "closed" | "open"."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if text not in ("closed", "open"):
        raise UserError(f"{where}: answer_type {short(value, 60)} is neither CLOSED nor OPEN")
    return text


def infer_answer_type(answer: str) -> str:
    """For sources without an answer type: yes/no answers are closed, everything else open."""
    return "closed" if answer.strip().lower().rstrip(".") in YES_NO else "open"


def split_of(name: str) -> str | None:
    """"train-00000-of-00002.parquet" -> "train", "validate.json" -> "val"; None if no split word."""
    return SPLIT_WORDS.get(re.split(r"[-_. ]", name.lower())[0])


def parse_fractions(text: str | None, default=DEFAULT_FRACTIONS) -> tuple[float, float, float]:
    if not text:
        return default
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise UserError(f"`split`: expected three numbers train,val,test, got {text!r}") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise UserError(f"`split`: expected three non-negative fractions summing to 1, got {text!r}")
    return parts[0], parts[1], parts[2]


def seeded_split(groups: dict[str, list[Sample]], fractions: tuple[float, float, float], seed: int) -> dict[str, list[Sample]]:
    """Assign whole groups (a study, an image) to splits so that no group crosses splits.

    Groups are sorted by key, then shuffled with `seed`, then filled in train, val, test order
    until each split holds its fraction of the samples: the result depends only on the keys,
    the sizes and the seed.
    """
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    total = sum(len(groups[k]) for k in keys)
    bounds = [fractions[0] * total, (fractions[0] + fractions[1]) * total]
    out: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    done = 0
    for key in keys:
        # the split is chosen by where the group's first sample would fall
        split = "train" if done < bounds[0] else "val" if done < bounds[1] else "test"
        if split == "val" and fractions[1] == 0:
            split = "test"
        out[split].extend(groups[key])
        done += len(groups[key])
    return {s: v for s, v in out.items() if v}


def check_csv_header(path: Path, header: list[str]) -> None:
    """Refuse a header that names a column twice: csv.DictReader keeps the last of the two cells
    without a word, so a second `Question` column would silently replace the first."""
    seen: dict[str, int] = {}
    for column, name in enumerate(header, start=1):
        if name in seen:
            raise UserError(f"{path}:1: column {name!r} appears twice in the header (columns {seen[name]} and "
                            f"{column}); rename or remove one")
        seen[name] = column


def csv_error(path: Path, reader: "csv.DictReader", err: csv.Error) -> UserError:
    """The error for a csv.Error met while reading `reader`, naming the line it concerns.

    DictReader.line_num is only updated after a whole row is read, so while the error is raised
    it still names the previous row; the underlying reader's line_num is the physical line reached.
    An unterminated quote (strict mode: "unexpected end of data") is read to the end of the file:
    the useful line is the one the broken row starts on, the line after the last good row."""
    if "unexpected end of data" in str(err):
        start = (reader.line_num or 0) + 1
        return UserError(f"{path}:{start}: malformed CSV: a quoted field opened in the row starting on line {start} "
                         f"is never closed (unterminated quote; the file ends at line {reader.reader.line_num})")
    return UserError(f"{path}:{reader.reader.line_num}: malformed CSV ({err})")


def read_csv_rows(path: Path, delimiter: str = ",") -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each CSV row; ragged rows and bad encodings name the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        if not reader.fieldnames:
            raise UserError(f"{path}: empty CSV (no header line)")
        header = [h.strip() for h in reader.fieldnames]
        check_csv_header(path, header)
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num
            if None in row:  # more cells than header columns
                raise UserError(f"{path}:{line}: {len(header) + len(row[None])} cells, the header has {len(header)}")
            if any(v is None for v in row.values()):
                raise UserError(f"{path}:{line}: fewer cells than the {len(header)} header columns")
            yield line, row
    except csv.Error as err:
        raise csv_error(path, reader, err) from None


def parse_xml(path: Path) -> ET.Element:
    """Parse an XML file, naming file and line on error.

    ElementTree never fetches external entities, and the expat bundled with Python 3.11 (>= 2.4.1)
    refuses entity-expansion bombs, so report files from the internet are safe to parse here.
    """
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as err:
        line = err.position[0] if err.position else "?"
        raise UserError(f"{path}:{line}: malformed XML ({err})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None


class _Refused(pickle.UnpicklingError):
    pass


class _PlainUnpickler(pickle.Unpickler):
    """Admits only what plain data pickles contain: dict, list, tuple, set, str, bytes, numbers,
    bool, None. Those need no global lookup; any global (a class, a function) is refused before
    it can be called."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        raise _Refused(f"the pickle refers to {module}.{name}, only plain containers, "
                                     "strings and numbers are allowed")

    def persistent_load(self, pid):  # noqa: D401 - pickle API
        raise _Refused("the pickle uses persistent ids, only plain data is allowed")


# Work bounds for a loaded pickle. Pickle's memo lets a few hundred bytes reference one list
# from another list many times over (a list of 2 copies of a list of 2 copies ... 60 levels
# down holds 2**60 leaves): loading is instant, but anything that walks the records (str(),
# json.dumps, our readers) would never finish. A plain record pickle holds at most about one
# object per byte, so the walk below counts objects as a tree (shared ones each time they are
# reached) and stops at a bound tied to the file size, and refuses nesting deeper than
# records ever need (which also stops self-containing lists).
PICKLE_MAX_DEPTH = 32
PICKLE_NODES_PER_BYTE = 4
PICKLE_MIN_NODES = 100_000


def _check_pickle_size(obj: Any, path: Path, size: int) -> None:
    limit = max(PICKLE_MIN_NODES, PICKLE_NODES_PER_BYTE * size)
    stack: list[tuple[Any, int]] = [(obj, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > limit:
            raise UserError(f"{path}: refused to load: the pickle expands to more than {limit:,} objects "
                            f"from {size:,} bytes (shared references used as a decompression bomb)")
        if depth > PICKLE_MAX_DEPTH:
            raise UserError(f"{path}: refused to load: the pickle nests deeper than {PICKLE_MAX_DEPTH} levels "
                            "(or contains itself)")
        if isinstance(node, dict):
            stack.extend((x, depth + 1) for kv in node.items() for x in kv)
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend((x, depth + 1) for x in node)


def load_plain_pickle(path: Path) -> Any:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            obj = _PlainUnpickler(handle).load()
    except _Refused as err:
        raise UserError(f"{path}: refused to load: {err}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    except MemoryError:
        raise UserError(f"{path}: malformed pickle (it asks for more memory than there is)") from None
    except Exception as err:  # noqa: BLE001 - nothing can run (no globals), so any failure is a damaged file
        raise UserError(f"{path}: malformed pickle ({type(err).__name__}: {short(str(err), 200)})") from None
    _check_pickle_size(obj, path, size)
    return check_unicode(obj, str(path))


def need_keys(rec: Any, keys: Iterable[str], where: str) -> dict:
    if not isinstance(rec, dict):
        raise UserError(f"{where}: expected an object, got {_kind(rec)}")
    absent = [k for k in keys if k not in rec]
    if absent:
        raise UserError(f"{where}: missing {', '.join(absent)}")
    return rec


def need_list(obj: Any, path: Path, what: str = "a JSON list of records") -> list:
    if not isinstance(obj, list):
        raise UserError(f"{path}: expected {what}, got {type(obj).__name__}")
    return obj


def compact(meta: dict) -> dict:
    """Drop empty meta values so rows stay small and comparable across formats."""
    return {k: v for k, v in meta.items() if v is not None and v != "" and v != []}


def json_files(source: Path, what: str) -> list[Path]:
    """The JSON files of a source: the file itself, the split-named files of a folder
    (train*.json, val*.json, test*.json), or a folder's only JSON (split later, by --split)."""
    files = [source] if source.is_file() else sorted(p for p in source.glob("*.json") if split_of(p.name))
    if not files and source.is_dir() and len(list(source.glob("*.json"))) == 1:
        files = list(source.glob("*.json"))
    if not files:
        raise UserError(f"{source}: no {what} JSON (a file, or a folder with train*.json / val*.json / test*.json)")
    return files


def image_root(source: Path, images: Path | None) -> Path:
    """The folder images are resolved against: --images if given, else the source folder."""
    if images is not None:
        if not images.is_dir():
            raise UserError(f"{images}: `images` is not a folder")
        return images
    return source if source.is_dir() else source.parent
