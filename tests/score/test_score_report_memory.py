"""Scoring 50,000 reports (13 times MIMIC-CXR's test split) stays in bounded memory: BLEU,
ROUGE-L, CIDEr-D and the clinical labels with 1,000 bootstrap resamples each peak under 500 MB
(about 280 MB here). CIDEr-D's second pass recounts n-grams instead of holding every report's
n-gram dictionaries (which peaked at 700 MB on this file, and 1.4 GB on the benchmark's longer
reports), the labeler's caches are bounded, and the bootstrap keeps 16-bit draw counts. METEOR is left out: its JVM is a process of its own
(-Xmx2G), and it would take minutes here."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

# VmHWM of the child itself (see test_score_memory.py: ru_maxrss would carry the parent's size)
MEASURE = """
import sys
from pefomed.cli.app import main
code = main(sys.argv[1:])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("PEAK_MB", int(hwm.split()[1]) / 1024)
sys.exit(code)
"""
SENTENCES = Path(__file__).parent / "data" / "clinical_sentences.jsonl"


@pytest.mark.slow
def test_fifty_thousand_reports_in_bounded_memory(tmp_path):
    pool = [json.loads(line)["text"] for line in SENTENCES.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(0)

    def report() -> str:  # mostly distinct reports, as real ones are: sides, sizes and dates vary
        return " ".join(rng.choice(pool).replace("right", rng.choice(["right", "left"])).rstrip(".")
                        + f", as on {rng.randint(1, 12)}/{rng.randint(1, 28)}." for _ in range(rng.randint(1, 2)))

    pred = tmp_path / "pred.jsonl"
    with open(pred, "w") as handle:
        for i in range(50_000):
            handle.write(json.dumps({"id": f"r{i}", "task": "report", "images": [f"s{i}/v.jpg"], "question": "?",
                                     "prediction": report(), "reference": report()}) + "\n")
    out = tmp_path / "metrics.json"
    done = subprocess.run([sys.executable, "-c", MEASURE, "score", str(pred), "--no-meteor", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    peak = float(done.stdout.split("PEAK_MB")[-1])
    assert peak < 500, f"scoring 50,000 reports peaked at {peak:.0f} MB"
    metrics = json.loads(out.read_text())
    for name in ("BLEU-4", "ROUGE-L", "CIDEr-D"):
        entry = metrics["report"][name]
        assert entry["n"] == 50_000 and entry["ci_low"] < entry["value"] < entry["ci_high"]
    assert metrics["clinical"]["f1_micro/14"]["n"] == 50_000
