"""`pefomed infer --workers N`: images decoded and prompts encoded in DataLoader worker processes
ahead of the model give the very same PRED.jsonl as without workers; a run interrupted without
workers resumes with them to the same bytes; a bad image found in a worker stops the run with the
same message, and --skip-bad lists the same reasons."""

from __future__ import annotations

import json

from PIL import Image

from pefomed.cli.app import main


def scans(folder, n: int = 11):
    for i in range(n):
        sub = folder / f"s{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 28), ((i * 23) % 256, 90, 200 - i * 9)).save(sub / f"x{i:02d}.png")
    return folder


def test_workers_write_the_same_file_and_resume_it(tmp_path):
    folder = scans(tmp_path / "scans")
    common = ["--images", str(folder), "--question", "Normal?", "--max-new-tokens", "3", "--batch-size", "3"]
    assert main(["infer", "tiny-demo", "--out", str(tmp_path / "plain.jsonl"), *common]) == 0
    assert main(["infer", "tiny-demo", "--out", str(tmp_path / "workers.jsonl"), *common, "--workers", "2"]) == 0
    plain = (tmp_path / "plain.jsonl").read_bytes()
    assert (tmp_path / "workers.jsonl").read_bytes() == plain and plain.count(b"\n") == 11
    settings = json.loads((tmp_path / "workers.settings.json").read_text())
    assert settings["generation"]["workers"] == 2

    # an interrupted run without workers (4 whole lines and a torn one) resumed with 2 workers
    out = tmp_path / "resumed.jsonl"
    lines = plain.splitlines(keepends=True)
    out.with_name("resumed.jsonl.partial").write_bytes(b"".join(lines[:4]) + lines[4][:10])
    plain_settings = json.loads((tmp_path / "plain.settings.json").read_text())
    (tmp_path / "resumed.settings.json.partial").write_text(json.dumps(plain_settings))
    assert main(["infer", "tiny-demo", "--out", str(out), *common, "--workers", "2"]) == 0
    assert out.read_bytes() == plain and not out.with_name("resumed.jsonl.partial").exists()


def test_a_bad_image_in_a_worker_is_the_same_message_and_the_same_skipped_row(tmp_path, capsys):
    folder = scans(tmp_path / "scans", n=5)
    (folder / "s1" / "x01.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "s2" / "empty.png").write_bytes(b"")
    common = ["--images", str(folder), "--question", "Normal?", "--max-new-tokens", "2", "--batch-size", "2"]
    errors = []
    for workers in ("0", "2"):
        capsys.readouterr()
        assert main(["infer", "tiny-demo", "--out", str(tmp_path / f"w{workers}.jsonl"), *common,
                     "--workers", workers]) == 2
        errors.append([line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")])
    assert errors[0] == errors[1] and len(errors[0]) == 1 and "x01.png: unreadable image" in errors[0][0]
    skipped = []
    for workers in ("0", "2"):
        out = tmp_path / f"skip{workers}.jsonl"
        assert main(["infer", "tiny-demo", "--out", str(out), *common, "--workers", workers, "--skip-bad"]) == 0
        skipped.append((out.with_name(f"skip{workers}.skipped.jsonl").read_text(), len(out.read_bytes().splitlines())))
    assert skipped[0] == skipped[1] and skipped[0][1] == 4
    assert [json.loads(line)["id"] for line in skipped[0][0].splitlines()] == ["s1/x01.png", "s2/empty.png"]
