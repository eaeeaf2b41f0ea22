"""Periodic evaluation keeps the best weights; a stage-2 run starts from a stage-1 run."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from pefomed.cli.app import main


@pytest.fixture(scope="module")
def spot_data(tmp_path_factory):
    from pefomed.data.synthetic import write_bright_spot_dataset

    from pefomed.records import read_split, write_split

    data = write_bright_spot_dataset(tmp_path_factory.mktemp("spot") / "data", n_train=32, n_test=8)
    write_split(data, "val", read_split(data, "test"))
    return data


@pytest.mark.slow
def test_periodic_evaluation_keeps_best_and_last(tmp_path, spot_data):
    run = tmp_path / "run"
    assert main(["train", "tiny-demo", "--data", str(spot_data), "--out", str(run), "train.max_steps=6",
                 "train.batch_size=8", "train.lr=5e-3", "train.eval_every=2"]) == 0
    rows = [json.loads(line) for line in open(run / "eval_log.jsonl")]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert all(r["metric"] == "vqa_accuracy" and 0.0 <= r["value"] <= 1.0 for r in rows)
    best = json.loads((run / "best.json").read_text())
    assert best["value"] == max(r["value"] for r in rows)
    assert best["step"] == min(r["step"] for r in rows if r["value"] == best["value"])
    assert (run / "best" / "adapter_config.json").is_file() and (run / "adapter" / "adapter_config.json").is_file()
    pytest.importorskip("tensorboard")
    assert list((run / "tensorboard").glob("events.out.tfevents.*")), "TensorBoard events are written"


def test_eval_needs_a_val_split(tmp_path, spot_data, capsys):
    data = tmp_path / "noval"
    shutil.copytree(spot_data, data)
    (data / "val.jsonl").unlink()
    manifest = json.loads((data / "manifest.json").read_text())
    del manifest["splits"]["val"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    assert main(["train", "tiny-demo", "--data", str(data), "--out", str(tmp_path / "r"), "train.eval_every=2"]) == 2
    assert "no 'val' split" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("stage1_method", ["lora", "projector"])
def test_stage_two_starts_from_stage_one(tmp_path, spot_data, stage1_method):
    stage1 = tmp_path / "stage1"
    assert main(["train", "tiny-demo", "--data", str(spot_data), "--out", str(stage1), "train.max_steps=2",
                 "train.batch_size=8", "train.lr=1e-2", f"method.name={stage1_method}"]) == 0
    stage2 = tmp_path / "stage2"
    # a vanishing learning rate: stage 2's weights stay where stage 1 left them
    assert main(["train", "tiny-demo", "--data", str(spot_data), "--out", str(stage2), "train.max_steps=1",
                 "train.batch_size=8", "train.lr=1e-12", f"train.init_from={stage1}"]) == 0
    after = load_file(stage2 / "adapter" / "adapter_model.safetensors")
    if stage1_method == "lora":
        before = load_file(stage1 / "adapter" / "adapter_model.safetensors")
    else:  # projector-only stage 1: its projector seeds stage 2's trainable projector copy
        before = {"base_model.model." + k: v for k, v in load_file(stage1 / "weights" / "model.safetensors").items()}
    shared = [k for k in before if k in after]
    assert any("multi_modal_projector" in k for k in shared)
    for key in shared:
        assert torch.allclose(before[key], after[key], atol=1e-6), key


def test_init_from_must_be_a_finished_run(tmp_path, spot_data, capsys):
    assert main(["train", "tiny-demo", "--data", str(spot_data), "--out", str(tmp_path / "r"),
                 f"train.init_from={tmp_path}"]) == 2
    assert "has no adapter/ or weights/" in capsys.readouterr().err


@pytest.mark.slow
def test_report_runs_are_selected_by_bleu4_plus_cider(tmp_path, spot_data):
    from pefomed.records import Sample, read_split, write_split

    reports = ["The heart size is normal. The lungs are clear.", "Small bilateral pleural effusions."]
    data = tmp_path / "reports"
    data.mkdir()
    shutil.copytree(spot_data / "images", data / "images")
    for split in ("train", "val"):
        images = [s.images for s in read_split(spot_data, "train" if split == "train" else "test")]
        write_split(data, split, [Sample(id=f"{split}-{i}", task="report", images=imgs, answer=reports[i % 2])
                                  for i, imgs in enumerate(images)])
    run = tmp_path / "run"
    assert main(["train", "tiny-demo", "--data", str(data), "--out", str(run), "train.max_steps=4",
                 "train.batch_size=8", "train.eval_every=2", "infer.max_new_tokens=12"]) == 0
    rows = [json.loads(line) for line in open(run / "eval_log.jsonl")]
    assert [r["metric"] for r in rows] == ["bleu4_cider", "bleu4_cider"]
    assert all(r["value"] >= 0 for r in rows)
