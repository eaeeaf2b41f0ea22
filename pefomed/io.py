"""File I/O shared by every stage: atomic writes and line-checked JSONL.

Every output is written to a temporary file in the same folder and renamed into place, so an
interrupted command never leaves a half-written file that the next command would read as whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import signal
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


# --- whole folders --------------------------------------------------------------------------------
#
# A folder (RUN_DIR/adapter, a DATA_DIR, an export) is written into a hidden sibling, synced, and
# swapped in with two renames: NAME -> .NAME.old, then .NAME.WRITER-PID-* -> NAME, then .NAME.old
# is deleted. rename() cannot replace a non-empty folder in one step, so there is a moment between
# the two renames with no NAME; at that moment .NAME.old is whole, and `folder_in_place` (readers)
# and `recover_folder` (the next writer) take it for NAME. At every instruction one whole folder,
# old or new, is therefore findable: a kill -9 never leaves "neither".

FAULT_ENV = "PEFOMED_FAULT_AT"
_fault_ops = 0


def _fault_point(op: str) -> None:
    """Test hook, not a setting: with PEFOMED_FAULT_AT=N the process SIGKILLs itself just before
    the Nth file operation of the folder swaps below (counted from 1 over the whole process), so a
    test can stop it at every step of a swap, not only at random times (tests/robustness/
    test_kill_folder_swap.py). Read here only; unset, it costs one dictionary lookup per step."""
    global _fault_ops
    at = os.environ.get(FAULT_ENV)
    if not at:
        return
    _fault_ops += 1
    if at.strip() == str(_fault_ops):
        sys.stderr.write(f"{FAULT_ENV}={at}: killed before {op}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def old_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def folder_in_place(final: str | os.PathLike) -> Path:
    """Where readers find the folder `final`: itself, or its whole old copy when a writer was
    stopped between its two renames (the next writer puts that copy back)."""
    final = Path(final)
    if not final.exists() and old_name(final).is_dir():
        return old_name(final)
    return final


def recover_folder(final: str | os.PathLike) -> None:
    """Finish or undo a swap that a kill interrupted; call only as the folder's sole writer."""
    final = Path(final)
    old = old_name(final)
    if not old.is_dir():
        return
    if final.exists():  # the new folder is in place: only the delete of the old one was cut short
        shutil.rmtree(old, ignore_errors=True)
    else:  # stopped between the renames: the old folder is whole, the new one was never published
        os.rename(old, final)
        fsync_dir(final.parent)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the renames are still atomic
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):  # files before the folders that name them
        if path.is_symlink():
            continue
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(folder)


def swap_in_folder(new: str | os.PathLike, final: str | os.PathLike) -> None:
    """Make the finished folder `new` (a hidden sibling of `final`) be `final`, replacing an old
    folder there; the caller must be the only writer of `final`."""
    new, final = Path(new), Path(final)
    recover_folder(final)
    _fault_point("syncing the new folder")
    _fsync_tree(new)  # its bytes on disk before any name points at it
    old = None
    if final.is_dir() and not final.is_symlink():
        if any(final.iterdir()):
            old = old_name(final)
            _fault_point("moving the old folder aside")
            os.rename(final, old)
        else:
            _fault_point("removing the empty folder")
            final.rmdir()
    _fault_point("renaming the new folder into place")
    try:
        os.rename(new, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    _fault_point("syncing the parent folder")
    fsync_dir(final.parent)
    if old is not None:
        _fault_point("deleting the old folder")
        shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def staging_folder(final: str | os.PathLike, writer: str, sole_writer: bool) -> Path:
    """A new empty hidden sibling `.NAME.WRITER-PID-XXXXXXXX` of `final` for one writer to fill.

    First the staging folders that killed writers of `final` left (kill -9 and power cuts skip
    every cleanup) are deleted: as the sole writer (the caller holds a lock on `final`), every
    `.NAME.WRITER-*` folder, and an interrupted swap is finished or undone; without a lock, only
    those whose process no longer runs, so a writer still at work keeps its folder. The writer's
    name keeps each command's folders apart (`pefomed export` never sweeps a prepare's). OSError
    propagates, for the caller's message."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if sole_writer:
        recover_folder(final)
    ours = re.compile(rf"\.{re.escape(final.name)}\.{re.escape(writer)}-(?P<pid>\d+)-[^/]+")
    for stale in final.parent.glob(f".{_glob_escape(final.name)}.{_glob_escape(writer)}-*-*"):
        match = ours.fullmatch(stale.name)
        if match and stale.is_dir() and not stale.is_symlink() and (sole_writer or not _pid_alive(int(match["pid"]))):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.{writer}-{os.getpid()}-", dir=final.parent))


def publish_folder(new: str | os.PathLike, final: str | os.PathLike) -> None:
    """Give the filled staging folder `new` the modes of a folder the user made (mkdtemp's is
    private, 0700) and swap it in as `final` (`swap_in_folder`)."""
    os.chmod(new, 0o777 & ~_umask())
    swap_in_folder(new, final)


@contextlib.contextmanager
def atomic_folder(final: str | os.PathLike, writer: str = "new", sole_writer: bool = True) -> Iterator[Path]:
    """The one whole-folder writer (RUN_DIR/adapter, a DATA_DIR, an export): yield an empty
    `staging_folder` of `final` to fill; on success it becomes `final` whole (`publish_folder`),
    on an error it is deleted and an old `final` stays as it was. `writer` names the command in
    the staging folder's name; `sole_writer`: the caller holds a lock that keeps every other
    writer of `final` out (see `staging_folder`)."""
    final = Path(final)
    try:
        new = staging_folder(final, writer, sole_writer)
    except OSError as err:
        raise UserError(f"{final}: cannot write ({err.strerror or err})") from None
    try:
        yield new
        publish_folder(new, final)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise


def _glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


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


class _Overflow(ValueError):
    def __init__(self, text: str):
        super().__init__(f"number {text[:40]} overflows to infinity")
        self.text = text


def _finite_float(text: str) -> float:
    # json.loads turns 1e400 into inf without a word (allow_nan guards only the NaN/Infinity
    # words); an infinite score, size or confidence would poison every mean computed from it
    value = float(text)
    if not math.isfinite(value):
        raise _Overflow(text)
    return value


_STRING_OR_NUMBER = re.compile(r'"(?:[^"\\]|\\.)*"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?')


def _line_of_number(text: str, number: str) -> int | None:
    """The line of the first JSON number token spelled `number` (strings skipped whole, so digits
    inside a text value are never taken for it); json's parse_float hook is given no position."""
    for match in _STRING_OR_NUMBER.finditer(text):
        if match.group() == number:
            return text.count("\n", 0, match.start()) + 1
    return None


def loads_strict(text: str) -> Any:
    """json.loads with every file's rules: no NaN/Infinity, no number that overflows, no repeated key."""
    return json.loads(text, parse_constant=_reject_nan, parse_float=_finite_float, object_pairs_hook=_unique_keys)


def _loads(text: str, where: str, add_line: bool = False) -> Any:
    try:
        return loads_strict(text)
    except (json.JSONDecodeError, ValueError) as err:
        line = getattr(err, "lineno", None)
        if line is None and isinstance(err, _Overflow) and add_line:
            line = _line_of_number(text, err.text)
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
