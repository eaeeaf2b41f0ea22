"""Two processes on this CPU (torchrun, gloo) give the same adapter as one process with the same
global batch, and ZeRO-3 with text-only micro-batches on one process does not hang."""

import json
import os
import shutil
import subprocess

import pytest
import torch
from safetensors.torch import load_file

COMMON = ["train.max_steps=3", "train.lr=1e-2", "method.dropout=0.0", "train.seed=2"]


def torchrun(args, cwd, timeout=400):
    exe = shutil.which("torchrun")
    assert exe, "torchrun (installed with torch) is missing"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    cmd = [exe, "--nproc_per_node", "2", "--master_port", "0", "-m", "pefomed.cli.app", *args]
    # --master_port 0 is not portable across torch versions: pick a free port ourselves
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        cmd[cmd.index("--master_port") + 1] = str(s.getsockname()[1])
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    from pefomed.cli.app import main
    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "data", n_train=16, n_test=2)
    assert main(["train", "tiny-demo", "--data", str(data), "--out", str(tmp_path / "one"),
                 "train.batch_size=4", *COMMON]) == 0
    proc = torchrun(["train", "tiny-demo", "--data", str(data), "--out", str(tmp_path / "two"),
                     "train.batch_size=2", *COMMON], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = load_file(tmp_path / "one" / "adapter" / "adapter_model.safetensors")
    two = load_file(tmp_path / "two" / "adapter" / "adapter_model.safetensors")
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5), key
    log_one = [json.loads(line)["loss"] for line in open(tmp_path / "one" / "train_log.jsonl")]
    log_two = [json.loads(line)["loss"] for line in open(tmp_path / "two" / "train_log.jsonl")]
    assert log_one == pytest.approx(log_two, abs=1e-5)


@pytest.mark.slow
def test_zero3_two_processes_with_text_only_batches_do_not_hang(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset
    from pefomed.records import write_split
    from pefomed.records import read_split

    data = write_bright_spot_dataset(tmp_path / "data", n_train=8, n_test=2)
    samples = read_split(data, "train")
    for sample in samples[1::2]:
        sample.images, sample.question = [], "A question without an image?"
    write_split(data, "train", samples)
    # batch 1: at every step one process has an image sample, the other a text-only one
    proc = torchrun(["train", "tiny-demo", "--data", str(data), "--out", str(tmp_path / "run"),
                     "train.batch_size=1", "train.deepspeed=zero3", *COMMON], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_the_deepspeed_launcher_works_too(tmp_path):
    """`deepspeed --module pefomed.cli.app train ...` passes --local_rank before the command."""
    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "data", n_train=8, n_test=2)
    exe = shutil.which("deepspeed")
    assert exe, "the deepspeed launcher is missing"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    proc = subprocess.run([exe, "--num_gpus", "2", "--master_port", port, "--module", "pefomed.cli.app", "train",
                           "tiny-demo", "--data", str(data), "--out", str(tmp_path / "run"), "train.batch_size=2",
                           *COMMON], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
