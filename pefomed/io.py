"""File I/O shared by every stage: atomic writes and line-checked JSONL.

Every output is written to a temporary file in the same folder and renamed into place, so an
interrupted command never leaves a half-written file that the next command would read as whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from pefomed.errors import UserError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary sibling of `path` for writing; rename it over `path` on success."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; name a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
    except OSError as err:  # the parent is a file, no permission, a name too long
        raise UserError(f"{path}: cannot write ({err.strerror or err})") from None
    os.close(fd)
    try:
        kwargs = {"encoding": encoding} if "b" not in mode else {}
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would have
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _reject_nan(value: str):
    raise ValueError(f"{value} is not a valid JSON number")


def dumps(obj: Any) -> str:
    """One JSON line: UTF-8 kept as is, keys in a stable order, NaN refused."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=2, sort_keys=True, allow_nan=False)
        handle.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(dumps(row) + "\n")
            n += 1
    return n


# A JSONL line longer than this is refused with its line number instead of being read into memory
# whole (a split or PRED.jsonl line is a few KiB; a report with a long history a few hundred).
MAX_LINE_BYTES = 64 << 20


def short(value: Any, limit: int = 120) -> str:
    """repr() of a value cut to `limit` characters, for error messages about untrusted data
    (a 5 MB id or a deeply nested object must not turn one error line into a flood)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlevel = 3
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: Any, limit: int = 120) -> str:
    """Text for an error message as it is (no quotes), cut to `limit` characters, with anything
    that cannot be printed as UTF-8 (a lone surrogate) shown as a backslash escape."""
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _key_path(obj: Any) -> str | None:
    """Where the first string that is not valid Unicode sits: 'meta.organ', '[3].question'."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return where or "the value"
        elif isinstance(node, dict):
            for key, value in node.items():
                try:
                    str(key).encode("utf-8")
                except UnicodeEncodeError:
                    return f"{where}.<key>" if where else "a key"
                stack.append((f"{where}.{key}" if where else str(key), value))
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(node))
    return None


def check_unicode(obj: Any, where: str) -> Any:
    """Refuse text that cannot be written back as UTF-8: lone surrogates (JSON's "\\ud800",
    a non-UTF-8 file name read through surrogateescape). Python accepts them in a str, but
    every later write of that str would fail, so they are stopped where they enter."""
    try:
        json.dumps(obj, ensure_ascii=False, allow_nan=True).encode("utf-8")
        return obj
    except UnicodeEncodeError:
        pass
    except (TypeError, ValueError, RecursionError):
        return obj  # not plain JSON data (the callers check types themselves)
    raise UserError(f"{where}: {_key_path(obj) or 'a field'} holds a lone surrogate (an unpaired \\uD800-\\uDFFF "
                    "escape or a non-UTF-8 byte), which is not valid Unicode text")


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    # json.loads keeps the last of two equal keys without a word; a record that says "answer"
    # twice is ambiguous, so it is refused with the key named.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(f"duplicate key {short(duplicate, 60)}")
    return obj


def _loads(text: str, where: str, add_line: bool = False) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_nan, object_pairs_hook=_unique_keys)
    except (json.JSONDecodeError, ValueError) as err:
        line = getattr(err, "lineno", None)
        at = f"{where}:{line}" if line and add_line else where
        raise UserError(f"{at}: malformed JSON ({getattr(err, 'msg', err)})") from None
    except MemoryError:
        raise UserError(f"{where}: JSON too large to hold in memory") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested too deeply (more than about {sys.getrecursionlimit()} levels)") from None


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        if not path.is_file():
            raise UserError(f"{path}: file not found")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    return check_unicode(_loads(text, str(path), add_line=True), str(path))


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a bad line is a UserError naming it."""
    path = Path(path)
    try:
        if not path.is_file():
            raise UserError(f"{path}: file not found")
        handle = open(path, "rb")
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    with handle:
        yield from iter_jsonl_lines(path, iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""))


def iter_jsonl_lines(path: Path, lines: Iterable[bytes]) -> Iterator[tuple[int, dict]]:
    """The checks of iter_jsonl over lines already in memory (read_split hashes the bytes it parses)."""
    for lineno, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise UserError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES >> 20} MiB; refusing to read it")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"{path}:{lineno}: not UTF-8 (byte {err.start} of the line)") from None
        if not text.strip():
            continue
        obj = check_unicode(_loads(text, f"{path}:{lineno}"), f"{path}:{lineno}")
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
