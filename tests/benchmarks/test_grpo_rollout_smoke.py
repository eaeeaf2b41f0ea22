"""benchmarks/bench_grpo_rollout.py at toy sizes: its report has every side and the rollout share,
every side produced the same number of answers, and under greedy decoding pefomed's batched
rollout (GrpoStepper.rollout, one generate call per group batch) gives exactly the completions of
the plain per-question and per-answer generate loops. No wall-clock figure is judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_grpo_rollout.py"
SIDES = ["pefomed", "loop_per_question", "loop_per_answer"]


def test_greedy_rollout_equals_the_generate_loops_and_the_report_is_complete(tmp_path):
    out = tmp_path / "report.json"
    questions, g, batch = 6, 3, 4  # 4 + 2: the last group batch is short
    proc = subprocess.run([sys.executable, str(SCRIPT), "--greedy", "--questions", str(questions), "--generations",
                           str(g), "--batch-size", str(batch), "--max-new-tokens", "5", "--steps", "2",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert list(report["sides"]) == SIDES
    n = questions * g
    calls = {"pefomed": 2, "loop_per_question": questions, "loop_per_answer": n}
    for name in SIDES:
        side = report["sides"][name]
        assert side["samples"] == n, (name, side)
        assert side["generate_calls"] == calls[name], (name, side)
        assert side["seconds"] > 0 and side["samples_per_s"] > 0 and side["pefomed_speedup"] > 0
    # the correctness check: identical greedy completions on every side, and not trivially (empty)
    assert report["completions_equal"] == {"loop_per_question": n, "loop_per_answer": n}
    assert report["nonempty_completions"] > 0
    share = report["rollout_share"]
    assert share["steps"] == 1 and 0 < share["min"] <= share["median"] <= share["max"] < 1
    machine = report["machine"]
    assert machine["cpus"] == os.cpu_count() and len(machine["load_average_before"]) == 3
    # the printed table and the machine's state, with the caveat about load
    for title in ("| pefomed rollout", "| loop: one generate call per question", "| loop: one generate call per answer"):
        assert title in proc.stdout
    assert f"{os.cpu_count()} CPUs" in proc.stdout and "load average" in proc.stdout
    assert "are not claims" in proc.stdout
    assert f"loop_per_question {n}/{n}, loop_per_answer {n}/{n}" in proc.stdout
