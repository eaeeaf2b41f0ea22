"""What every fuzz case must end in: exit 0 with a whole, correct output, or exit 2 with one
clear message (never a traceback, never a half-written output, never a callable run)."""

from __future__ import annotations

from pathlib import Path

# str() of the non-text hostile values: a field holding one of these was converted silently
SILENT = {"None", "True", "False", "[]", "[None]", "[1, 2]", "['a', 'b']", "[[['x']]]", "{}", "{'a': 1}",
          "{'question': 'q'}"}


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """pefomed.cli.app.main in-process: any exception other than a UserError escapes it, so a
    bug fails the test with its traceback rather than passing as an exit code."""
    from pefomed.cli.app import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_message(code: int, out: str, err: str, label: str) -> None:
    assert code in (0, 2), f"{label}: exit {code}\n{out[-2000:]}\n{err[-2000:]}"
    assert "Traceback" not in out + err, f"{label}: traceback printed\n{err[-3000:]}"
    if code == 2:
        # progress bars may come first; then exactly one error (with its listing and hint lines)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, f"{label}: exit 2 without exactly one error line: {err[-1000:]!r}"
        assert len(err) < 20_000, f"{label}: the error message is {len(err)} characters long"


def no_staging_left(out: Path) -> None:
    leftovers = [p.name for p in out.parent.glob(f".{out.name}.*")]
    assert not leftovers, f"hidden staging folders left beside {out}: {leftovers}"


def check_data_dir(out: Path, label: str, typed: bool = True) -> int:
    """A DATA_DIR that prepare said it wrote: every split reads back (sha256 checked against the
    manifest), ids unique, every image inside and present, and (`typed`: a JSON or pickle source,
    where a list is not text) no text made from a non-text value."""
    from pefomed.records import read_manifest, read_split, resolve_image

    manifest = read_manifest(out)
    assert manifest["splits"], f"{label}: a DATA_DIR without splits"
    ids: set[str] = set()
    n = 0
    for split in manifest["splits"]:
        for sample in read_split(out, split):
            assert sample.id not in ids, f"{label}: id {sample.id!r} twice"
            ids.add(sample.id)
            for rel in sample.images:
                assert resolve_image(out, rel, sample.id).is_file(), f"{label}: {rel} missing"
            for name in ("question", "answer", "prompt"):
                value = getattr(sample, name)
                assert not typed or value not in SILENT, f"{label}: {sample.id} {name} is {value!r}, made from a non-text value"
            if sample.task == "vqa":
                assert isinstance(sample.question, str)
            n += 1
    return n
