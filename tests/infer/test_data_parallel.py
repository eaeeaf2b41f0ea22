"""`pefomed infer` under torchrun: two CPU processes each answer an interleaved shard into their
own resumable part, rank 0 merges them into one PRED.jsonl in input order that equals a
one-process run (greedy); a run killed mid-way (SIGKILL) resumes per shard with no duplicate and no
missing id, and only with as many processes as it had."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from PIL import Image

from pefomed.cli.app import main

N_IMAGES = 160  # enough that a shard is still being answered when the first lines appear


def torchrun_command(args):
    exe = shutil.which("torchrun")
    assert exe, "torchrun (installed with torch) is missing"
    with socket.socket() as s:  # a free port: --master_port 0 is not portable across torch versions
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return [exe, "--nproc_per_node", "2", "--master_port", str(port), "-m", "pefomed.cli.app", *args], env


def scans(folder):
    for i in range(N_IMAGES):
        sub = folder / f"study{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 24), ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256)).save(sub / f"image{i:03d}.png")
    return folder


def whole_lines(path):
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n")


@pytest.mark.slow
def test_two_processes_merge_to_the_one_process_answers_and_resume_after_a_kill(tmp_path, capsys):
    folder = scans(tmp_path / "scans")
    common = ["--images", str(folder), "--question", "Is this normal?", "--batch-size", "4", "--max-new-tokens", "4"]
    assert main(["infer", "tiny-demo", "--out", str(tmp_path / "one.jsonl"), *common]) == 0
    one = (tmp_path / "one.jsonl").read_bytes()

    out = tmp_path / "two.jsonl"
    cmd, env = torchrun_command(["infer", "tiny-demo", "--out", str(out), *common])
    parts = [tmp_path / f"two.jsonl.part-{rank}-of-2.partial" for rank in range(2)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not any(whole_lines(p) for p in parts):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no answers after 240 s"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers, at once
        proc.wait()
    answered_before = sum(whole_lines(p) for p in parts)
    assert 0 < answered_before < N_IMAGES and not out.exists()

    # a one-process rerun would mix shards: refused, naming the part and how to resume it
    assert main(["infer", "tiny-demo", "--out", str(out), *common]) == 2
    err = capsys.readouterr().err
    assert "two.jsonl.part-" in err and "--nproc_per_node 2" in err

    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert out.read_bytes() == one  # input order, every id once, the same greedy answers
    ids = [json.loads(line)["id"] for line in one.splitlines()]
    assert len(ids) == len(set(ids)) == N_IMAGES and ids[:2] == ["study0/image000.png", "study0/image003.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.jsonl", "one.settings.json", "scans", "two.jsonl",
                                                          "two.settings.json"]
    settings = json.loads((tmp_path / "two.settings.json").read_text())
    assert settings["generation"]["processes"] == 2
    assert settings["inputs"] == json.loads((tmp_path / "one.settings.json").read_text())["inputs"]


def test_shards_run_one_after_the_other_merge_in_input_order(tmp_path, monkeypatch, capsys):
    """Without a launcher's rendezvous the processes need only the files: rank 1 then rank 0 of
    WORLD_SIZE=2 in this process give the one-process file; a part that also answers another
    shard's sample is refused, naming the part and the id."""
    folder = tmp_path / "scans"
    for i in range(7):
        (folder / f"s{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 24), (i * 30, 90, 200 - i * 20)).save(folder / f"s{i % 2}" / f"x{i}.png")
    common = ["--images", str(folder), "--question", "Normal?", "--max-new-tokens", "3", "--batch-size", "2"]
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert main(["infer", "tiny-demo", "--out", str(tmp_path / "one.jsonl"), *common]) == 0
    out = tmp_path / "two.jsonl"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["infer", "tiny-demo", "--out", str(out), *common]) == 0
    part1 = tmp_path / "two.jsonl.part-1-of-2"
    # input order s0/x0, s0/x2, s0/x4, s0/x6, s1/x1, ...: rank 1 answers every second one from the second
    assert not out.exists() and [json.loads(line)["id"] for line in open(part1)] == ["s0/x2.png", "s0/x6.png",
                                                                                     "s1/x3.png"]
    monkeypatch.setenv("RANK", "0")
    assert main(["infer", "tiny-demo", "--out", str(out), *common]) == 0
    assert out.read_bytes() == (tmp_path / "one.jsonl").read_bytes() and not part1.exists()

    # a damaged part: rank 1's file answers one of rank 0's samples as well (rank 0 checks every part)
    out.unlink()
    monkeypatch.setenv("RANK", "1")
    assert main(["infer", "tiny-demo", "--out", str(out), *common]) == 0
    first = (tmp_path / "one.jsonl").read_text().splitlines()[0]
    with open(part1, "a") as handle:
        handle.write(first + "\n")
    monkeypatch.setenv("RANK", "0")
    capsys.readouterr()
    assert main(["infer", "tiny-demo", "--out", str(out), *common]) == 2
    err = capsys.readouterr().err
    assert "two.jsonl.part-1-of-2" in err and "s0/x0.png" in err
