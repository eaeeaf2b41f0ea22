"""Fuzz `pefomed score`'s PRED.jsonl reader: each case is a valid predictions file with one
seeded mutation (a row's value replaced, a key removed or repeated, a line cut, re-encoded,
duplicated or made megabytes long). Exit 0 writes a METRICS.json that reads back; exit 2 is
one error line naming the file and line, and no METRICS.json."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import fuzzlib
from robust_checks import check_message, run_main

FAST = ["--no-meteor", "--no-clinical", "--no-semantic", "--bootstrap", "20"]


def base_rows() -> list[dict]:
    rows = []
    for i in range(8):
        rows.append({"id": f"q{i}", "task": "vqa", "question": f"Is there a mass {i}?", "prediction": "yes" if i % 3 else "no",
                     "reference": "yes" if i % 2 else "no", "answer_type": "closed", "images": [f"images/{i}.png"],
                     "meta": {"organ": "CHEST" if i % 2 else "HEAD", "question_type": "PRES"}})
    for i in range(3):
        rows.append({"id": f"o{i}", "question": "Which organ?", "prediction": "liver", "reference": ["liver", "lung", "brain"][i],
                     "answer_type": "open", "images": [f"images/o{i}.png"], "meta": {"organ": "ABD"}})
    return rows


def mutate_pred(path: Path, rng: random.Random) -> str:
    lines = [json.dumps(r) for r in base_rows()]
    op = rng.randrange(10)
    if op < 6:
        k = rng.randrange(len(lines))
        doc, label = fuzzlib.mutate_doc(json.loads(lines[k]), rng)
        lines[k] = fuzzlib.dump_doc(doc)
        label = f"line {k + 1}: {label}"
    elif op == 6:
        lines.append(lines[0])
        label = "duplicate id"
    elif op == 7:
        k = rng.randrange(len(lines))
        row = json.loads(lines[k])
        row["prediction"] = "yes " * rng.choice([10_000, 1_500_000])  # a multi-megabyte line
        lines[k] = json.dumps(row)
        label = f"line {k + 1}: {len(lines[k]) >> 10} KiB"
    else:
        data, label = fuzzlib.mutate_bytes(("\n".join(lines) + "\n").encode(), rng)
        path.write_bytes(data)
        return label
    path.write_text("\n".join(lines) + "\n")
    return label


@pytest.mark.parametrize("part", range(4))
def test_score_fuzz(part, tmp_path, capsys):
    n = max(1, fuzzlib.cases("score") // 4)
    outcomes = {0: 0, 2: 0}
    for seed in range(part * n, (part + 1) * n):
        case = tmp_path / str(seed)
        case.mkdir()
        rng = random.Random(f"score:{seed}")
        pred = case / "pred.jsonl"
        label = f"score seed {seed}: " + mutate_pred(pred, rng)
        out = case / "metrics.json"
        code, stdout, stderr = run_main(["score", pred, "--out", out, *FAST], capsys)
        check_message(code, stdout, stderr, label)
        if code == 0:
            metrics = json.loads(out.read_text())
            assert "vqa" in metrics or "report" in metrics, label
        else:
            assert not out.exists(), f"{label}: failed but wrote {out}"
            assert str(pred) in stderr or "--" in stderr, f"{label}: the error names neither the file nor an option"
        outcomes[code] += 1
    print(f"score part {part}: {n} cases, {outcomes[0]} scored, {outcomes[2]} refused")


def test_out_naming_a_folder_is_refused(tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in base_rows()))
    code, out, err = run_main(["score", pred, "--out", tmp_path, *FAST], capsys)
    check_message(code, out, err, "--out a folder")
    assert code == 2 and "is a folder" in err


def test_a_multi_megabyte_line_is_scored(tmp_path, capsys):
    rows = base_rows()
    rows[0]["prediction"] = "no " * 2_000_000  # 6 MB on one line
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run_main(["score", pred, "--out", tmp_path / "m.json", *FAST], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "m.json").read_text())["vqa"]["overall"]["n"] == len(rows)


def test_a_line_over_the_limit_is_refused_by_line(tmp_path, monkeypatch, capsys):
    import pefomed.io

    monkeypatch.setattr(pefomed.io, "MAX_LINE_BYTES", 1 << 20)
    rows = base_rows()
    rows[2]["prediction"] = "x" * (2 << 20)
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run_main(["score", pred, "--out", tmp_path / "m.json", *FAST], capsys)
    assert code == 2 and f"{pred}:3: line longer than 1 MiB" in err


def test_negative_seed_is_a_user_error(tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in base_rows()))
    code, out, err = run_main(["score", pred, "--out", tmp_path / "m.json", "--seed", "-1"], capsys)
    assert code == 2 and "--seed" in err


# JSON numbers that overflow to infinity (issue 21: `"organ": 1e400` made an `organ/inf` group, an
# infinite value a NaN mean). Its own seeds, so test_score_fuzz's cases stay the recorded ones.
OVERFLOWS = ["1e400", "-1e400", "1E+309", "2e308", "123456789e999"]
FINITE = ["1.7976931348623157e308", "1e-400", "-0.0", "3"]
SENTINEL = "__NUMBER_SENTINEL__"


def test_score_fuzz_number_overflow(tmp_path, capsys):
    n = max(1, fuzzlib.cases("score") // 2)
    refused = 0
    for seed in range(n):
        rng = random.Random(f"score-number:{seed}")
        rows = base_rows()
        k = rng.randrange(len(rows))
        container, key = rng.choice(fuzzlib._containers(rows[k]))  # a top-level or a nested value (meta.organ)
        container[key] = SENTINEL
        overflow = rng.random() < 0.75
        number = rng.choice(OVERFLOWS if overflow else FINITE)
        pred = tmp_path / f"{seed}.jsonl"
        pred.write_text("".join(json.dumps(r).replace(json.dumps(SENTINEL), number) + "\n" for r in rows))
        label = f"score number seed {seed}: line {k + 1} [{key!r}] = {number}"
        out = tmp_path / f"{seed}.metrics.json"
        code, stdout, stderr = run_main(["score", pred, "--out", out, *FAST], capsys)
        check_message(code, stdout, stderr, label)
        if overflow:
            assert code == 2 and f"{pred}:{k + 1}:" in stderr and "overflows to infinity" in stderr, f"{label}: {stderr[-600:]}"
        else:
            assert "overflows" not in stderr, label
        if code == 0:
            def no_constant(word):  # json.dumps writes inf and nan as Infinity and NaN
                raise AssertionError(f"{label}: {word} in METRICS.json")
            json.loads(out.read_text(), parse_constant=no_constant)
        else:
            assert not out.exists(), f"{label}: failed but wrote {out}"
        refused += code == 2
    print(f"score numbers: {n} cases, {refused} refused")
