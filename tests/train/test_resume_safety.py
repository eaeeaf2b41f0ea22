"""Resuming reads data, never code: a crafted RUN_DIR cannot run anything through `--resume`
(RNG state and DeepSpeed files are checked with weights_only loading before DeepSpeed opens
them), a tag cannot point outside RUN_DIR, and a finished run is not trained again."""

from __future__ import annotations

import shutil

import pytest

from pefomed.cli.app import main


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # what a malicious pickle does: call a function on load
        return (open, (self.marker, "w"))


@pytest.fixture
def copied_run(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


def test_a_finished_run_is_not_trained_again(copied_run, capsys):
    adapter = (copied_run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert main(["train", "--resume", str(copied_run)]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert (copied_run / "adapter" / "adapter_model.safetensors").read_bytes() == adapter


@pytest.mark.parametrize("victim", ["rng_rank0.pt", "mp_rank_00_model_states.pt",
                                    "zero_pp_rank_0_mp_rank_00_optim_states.pt"])
def test_a_pickle_carrying_a_callable_is_refused(copied_run, tmp_path, capsys, victim):
    import torch

    tag = (copied_run / "checkpoints" / "latest").read_text().strip()
    marker = tmp_path / "code-ran"
    torch.save({"payload": _RunsCode(marker)}, copied_run / "checkpoints" / tag / victim, pickle_protocol=2)
    assert main(["train", "--resume", str(copied_run)]) == 2
    err = capsys.readouterr().err
    assert "refusing" in err or "not a pefomed RNG state" in err
    assert not marker.exists(), "the pickle's callable ran"


def test_a_tag_pointing_outside_run_dir_is_refused(copied_run, capsys):
    (copied_run / "checkpoints" / "latest").write_text("../../elsewhere")
    assert main(["train", "--resume", str(copied_run)]) == 2
    assert "not a checkpoint tag" in capsys.readouterr().err

