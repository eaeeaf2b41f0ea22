"""A folder of real-world scans with a few bad files: without --skip-bad the first bad image is
one clear error naming it (a 30000x30000 PNG is refused from its header, never a PIL traceback);
with it, the good images are answered and each bad one is listed with its reason."""

from __future__ import annotations

import json
import struct
import zlib

from PIL import Image

from pefomed.cli.app import main


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def scans(folder):
    folder.mkdir()
    Image.new("RGB", (48, 48), (120, 120, 120)).save(folder / "a_good.png")
    (folder / "b_empty.png").write_bytes(b"")
    whole = (folder / "a_good.png").read_bytes()
    (folder / "c_truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "d_bomb.png").write_bytes(png_declaring(30000, 30000))
    return folder


def test_bad_scans_stop_with_one_message_or_are_skipped_and_listed(tiny_run, tmp_path, capsys):
    folder = scans(tmp_path / "scans")
    out = tmp_path / "pred.jsonl"
    args = ["infer", str(tiny_run), "--images", str(folder), "--question", "Is this normal?", "--out", str(out),
            "--max-new-tokens", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "b_empty.png" in err and "Traceback" not in err and not out.exists()
    assert main([*args, "--skip-bad"]) == 0
    assert [json.loads(line)["id"] for line in open(out)] == ["a_good.png"]
    skipped = {json.loads(line)["id"]: json.loads(line)["reason"] for line in open(tmp_path / "pred.skipped.jsonl")}
    assert set(skipped) == {"b_empty.png", "c_truncated.png", "d_bomb.png"}
    assert "limit" in skipped["d_bomb.png"] or "pixels" in skipped["d_bomb.png"]
    settings = json.loads((tmp_path / "pred.settings.json").read_text())
    assert settings["inputs"]["skipped"] == 3


def test_option_mistakes_are_one_message_before_any_model_loads(tiny_run, demo_data, tmp_path, capsys):
    base = ["infer", str(tiny_run), "--data", str(demo_data), "--out", str(tmp_path / "p.jsonl")]
    for extra, says in ((["--batch-size", "-3"], "--batch-size must be a whole number from 1 to 4096, or 'auto', got '-3'"),
                        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
                        (["--limit", "0"], "--limit must be at least 1"),
                        (["--skip-bad"], "--skip-bad goes with --images")):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "p.jsonl").exists()
