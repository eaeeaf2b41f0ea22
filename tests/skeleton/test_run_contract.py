"""RUN_DIR as `pefomed train` writes it (docs/formats.md), and PRED.jsonl as `pefomed infer` writes it."""

import json

import pytest
import torch
from PIL import Image

from pefomed.cli.app import main


def test_run_dir_holds_the_contract_files(tiny_run):
    for name in ("recipe.yaml", "trainable.json", "train_log.jsonl", "last.json",
                 "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                 "processor/processor_config.json", "processor/tokenizer.json", "checkpoints/latest"):
        assert (tiny_run / name).is_file(), name
    log = [json.loads(line) for line in open(tiny_run / "train_log.jsonl")]
    assert [row["step"] for row in log] == [1, 2]
    assert {"step", "loss", "lr", "samples_per_s", "peak_memory_mb"} <= set(log[0])
    trainable = json.loads((tiny_run / "trainable.json").read_text())
    assert trainable["components"]["vision"]["trainable"] == 0
    assert trainable["components"]["projector"]["trainable"] > 0
    assert trainable["components"]["llm"]["trainable"] > 0


def test_adapter_loads_with_plain_peft_and_carries_the_projector(tiny_run):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    weights = load_file(tiny_run / "adapter" / "adapter_model.safetensors")
    assert any("multi_modal_projector" in k for k in weights), "projector must be saved with the adapter"
    assert any("lora_A" in k for k in weights)
    assert not any("vision_tower" in k for k in weights), "LoRA must not land on the vision tower"
    base = AutoModelForImageTextToText.from_pretrained(tiny_run / "base_model")
    model = PeftModel.from_pretrained(base, tiny_run / "adapter")
    loaded = dict(model.named_parameters())
    for key, value in weights.items():
        match = [n for n in loaded if n.replace(".modules_to_save.default", "").replace(".default", "") == key]
        assert match, key
        assert torch.equal(loaded[match[0]].detach(), value), key


def test_infer_split_writes_prediction_rows(tiny_run, demo_data, tmp_path):
    out = tmp_path / "pred.jsonl"
    assert main(["infer", str(tiny_run), "--data", str(demo_data), "--split", "test", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in open(out)]
    test_ids = [json.loads(line)["id"] for line in open(demo_data / "test.jsonl")]
    assert [r["id"] for r in rows] == test_ids
    for row in rows:
        assert {"id", "images", "question", "prediction", "reference", "answer_type", "task", "meta"} <= set(row)
    assert not (tmp_path / "pred.jsonl.partial").exists()


def make_image_folder(folder):
    folder.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "a.png")
    Image.new("L", (50, 50), 128).save(folder / "b.jpg")
    Image.fromarray((torch.arange(64 * 64).reshape(64, 64) * 16).numpy().astype("uint16")).save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    return ["a.png", "b.jpg", "c.png"]


def test_infer_on_a_plain_folder_of_images(tiny_run, tmp_path):
    names = make_image_folder(tmp_path / "imgs")
    out = tmp_path / "q.jsonl"
    assert main(["infer", str(tiny_run), "--images", str(tmp_path / "imgs"), "--question", "Is this normal?",
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in open(out)]
    assert [r["id"] for r in rows] == names
    assert all(r["question"] == "Is this normal?" and r["task"] == "vqa" and "reference" not in r for r in rows)

    out = tmp_path / "reports.jsonl"
    from pefomed.recipe import load_recipe

    prompt = load_recipe(tiny_run / "recipe.yaml").data.report_prompt
    # the run learned VQA only: reports from it need the prompt said explicitly
    assert main(["infer", str(tiny_run), "--images", str(tmp_path / "imgs"), "--out", str(out)]) == 2
    assert main(["infer", str(tiny_run), "--images", str(tmp_path / "imgs"), "--out", str(out),
                 "--report-prompt", prompt]) == 0
    rows = [json.loads(line) for line in open(out)]
    assert len(rows) == 3 and all(r["task"] == "report" and r["question"] == prompt for r in rows)


def test_interrupted_infer_resumes_without_duplicates(tiny_run, demo_data, tmp_path):
    out = tmp_path / "pred.jsonl"
    partial = tmp_path / "pred.jsonl.partial"
    first = json.loads(open(demo_data / "test.jsonl").readline())
    done = {"id": first["id"], "images": first["images"], "question": first["question"], "prediction": "kept"}
    partial.write_text(json.dumps(done) + "\n" + '{"id": "torn')
    assert main(["infer", str(tiny_run), "--data", str(demo_data), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in open(out)]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == sum(1 for _ in open(demo_data / "test.jsonl"))
    assert rows[0]["prediction"] == "kept"


@pytest.mark.parametrize("args, message", [
    (["prepare", "/no/such/folder", "--format", "data-rad", "--out", "{tmp}/d"], "/no/such/folder"),
    (["prepare", "{demo}", "--format", "no-such-format", "--out", "{tmp}/d"], "unknown format 'no-such-format'"),
    (["train", "tiny-demo", "--data", "{tmp}", "train.lrr=1"], "unknown recipe key 'train.lrr'"),
    (["train", "{tmp}/missing.yaml"], "recipe file not found"),
    (["train", "tiny-demo", "--data", "{tmp}", "--out", "{tmp}/r"], "not a prepared DATA_DIR"),
    (["infer", "{tmp}", "--data", "{tmp}", "--out", "{tmp}/p.jsonl"], "not a run folder"),
    (["infer", "{run}", "--out", "{tmp}/p.jsonl"], "exactly one of --data"),
    # a folder without manifest.json is not a DATA_DIR (read_split checks the manifest's sha256s)
    (["infer", "{run}", "--data", "{tmp}", "--out", "{tmp}/p.jsonl"], "not a DATA_DIR (no manifest.json)"),
    (["infer", "{run}", "--images", "{tmp}", "--out", "{tmp}/p.jsonl"], "no images"),
    (["score", "{tmp}/missing.jsonl"], "missing.jsonl"),
])
def test_user_errors_are_one_message_and_exit_2(tmp_path, capsys, tiny_run, args, message):
    from pefomed.demo import demo_source

    args = [a.replace("{tmp}", str(tmp_path)).replace("{demo}", str(demo_source()))
            .replace("{run}", str(tiny_run)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err.replace("\n", "")
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["prepare", "train", "infer", "score", "export", "demo"])
def test_every_command_has_help_with_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    assert "Example" in capsys.readouterr().out
