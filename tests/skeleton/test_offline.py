"""With local sources only (the tiny model, a RUN_DIR, an exported model folder) no command opens a
network connection or prints a model-hub message: demo (prepare, train, infer, score), export,
infer of the exported folder and score run with the network cut (a new network namespace with
only loopback, `unshare -n`), with the hub's offline switches *unset*, as on a user's machine.

Why: bitsandbytes (imported by peft whenever it is installed) used to look up a hub kernel at import
time and print "Failed to load CPU gemm_4bit_forward from kernels-community ..." on a plain LoRA
export (pefomed.models.bundle.import_peft)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

HUB_WORDS = ("kernels-community", "huggingface.co", "Failed to load", "Network is unreachable",
             "Max retries", "Traceback", "trust status")


def _can_cut_network() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace here (unshare -n needs root): {probe.stderr.strip()[:200]}"
    return None


@pytest.mark.slow
def test_local_commands_never_reach_for_the_network(tmp_path):
    reason = _can_cut_network()
    if reason:
        pytest.skip(reason)
    exe = shutil.which("pefomed")
    assert exe, "the pefomed console script is not installed"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    steps = [
        [exe, "demo", "--out", "demo"],
        [exe, "export", "demo/run", "--merge", "--out", "exported"],
        [exe, "infer", "exported", "--data", "demo/data", "--out", "exported.jsonl"],
        [exe, "score", "exported.jsonl", "--out", "exported.metrics.json"],
    ]
    # loopback stays: the one-process training group talks to itself over 127.0.0.1, as on any machine
    script = "ip link set lo up && " + " && ".join(
        f"{{ {' '.join(step)} > step{i}.log 2>&1 || {{ echo failed: step {i}; exit 1; }}; }}"
        for i, step in enumerate(steps))
    proc = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=900,
                          cwd=tmp_path, env=env)
    logs = {i: (tmp_path / f"step{i}.log").read_text() if (tmp_path / f"step{i}.log").exists() else ""
            for i in range(len(steps))}
    assert proc.returncode == 0, (proc.stdout, proc.stderr, logs)
    for i, text in logs.items():
        for word in HUB_WORDS:
            assert word not in text, f"{' '.join(steps[i][1:3])}: {word!r} in its output:\n{text[-3000:]}"
    assert (tmp_path / "exported" / "config.json").is_file()
    assert (tmp_path / "exported.metrics.json").is_file()
