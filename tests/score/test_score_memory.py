"""Scoring a large file stays in bounded memory: 200,000 VQA rows over 50,000 images (the default
image clustering, 1,000 resamples) peak well under 1 GB. The bootstrap keeps 16-bit draw counts
per cluster and multiplies in blocks instead of a dense (resamples x rows) float64 matrix, which
alone would be 1.6 GB here."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a
# large pytest process would report the parent's size; VmHWM belongs to this process's own memory.
MEASURE = """
import sys
from pefomed.cli.app import main
code = main(sys.argv[1:])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("PEAK_MB", int(hwm.split()[1]) / 1024)
sys.exit(code)
"""


@pytest.mark.slow
def test_two_hundred_thousand_vqa_rows_in_bounded_memory(tmp_path):
    rng = random.Random(0)
    pred = tmp_path / "pred.jsonl"
    with open(pred, "w") as handle:
        for i in range(200_000):
            ref = rng.choice(["yes", "no", "left lung", "ct", "mri"])
            guess = ref if rng.random() < 0.6 else rng.choice(["yes", "no", "right lung"])
            handle.write(json.dumps({"id": f"q{i}", "images": [f"img{i // 4}.png"], "question": "?", "prediction": guess,
                                     "reference": ref, "answer_type": "closed" if ref in ("yes", "no") else "open",
                                     "task": "vqa", "meta": {"organ": rng.choice(["CHEST", "HEAD"])}}) + "\n")
    out = tmp_path / "metrics.json"
    done = subprocess.run([sys.executable, "-c", MEASURE, "score", str(pred), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    peak = float(done.stdout.split("PEAK_MB")[-1])
    assert peak < 1000, f"scoring 200,000 rows peaked at {peak:.0f} MB"
    overall = json.loads(out.read_text())["vqa"]["overall"]
    assert overall["n"] == 200_000 and overall["ci_low"] < overall["value"] < overall["ci_high"]
