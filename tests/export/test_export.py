"""`pefomed export`: the merged folder loads with plain transformers and behaves exactly like the
unmerged PeftModel that `pefomed infer` uses; bad inputs are one message and exit code 2."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from pefomed.cli.app import main

N_SAMPLES = 6
MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def merged(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "merged"
    assert main(["export", str(tiny_run), "--merge", "--out", str(out)]) == 0
    # Load from a copy elsewhere: the folder must not lean on RUN_DIR or relative paths.
    moved = tmp_path_factory.mktemp("moved") / "model"
    shutil.copytree(out, moved)
    return moved


def _test_batch(processor, tiny_run, demo_data):
    from pefomed.data.collate import Collator
    from pefomed.recipe import load_recipe
    from pefomed.records import read_split

    recipe = load_recipe(tiny_run / "recipe.yaml")
    samples = read_split(demo_data, "test")[:N_SAMPLES]
    collator = Collator(processor, recipe.data, demo_data, train=False)
    return collator([collator.encode(s) for s in samples]), collator.pad_id


def _greedy(model, batch, pad_id):
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1,
                             pad_token_id=pad_id)
    return out[:, batch["input_ids"].shape[1]:]


def _logits(model, batch):
    with torch.inference_mode():
        return model(**batch).logits.float()


def test_merged_folder_has_the_standard_files(merged):
    for name in ("config.json", "generation_config.json", "model.safetensors", "processor_config.json",
                 "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "README.md"):
        assert (merged / name).is_file(), name
    assert not (merged / "adapter_config.json").exists()
    from safetensors import safe_open

    with safe_open(merged / "model.safetensors", "pt") as handle:
        keys = list(handle.keys())
    assert not [k for k in keys if "lora_" in k or "modules_to_save" in k or "base_layer" in k]
    assert any("multi_modal_projector" in k for k in keys)
    assert json.loads((merged / "generation_config.json").read_text())["eos_token_id"] is not None


def test_chat_template_is_the_one_trained_with(merged, tiny_run):
    from transformers import AutoProcessor

    trained = AutoProcessor.from_pretrained(tiny_run / "processor").chat_template
    exported = AutoProcessor.from_pretrained(merged)
    assert trained and exported.chat_template == trained
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "is it normal?"}]}]
    prompt = exported.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("ASSISTANT:") and "<image>" in prompt


def test_merged_model_matches_the_unmerged_peft_model(merged, tiny_run, demo_data):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from pefomed.models.run_dir import load_run

    _, bundle = load_run(tiny_run, precision="fp32")
    model = AutoModelForImageTextToText.from_pretrained(merged).eval()
    processor = AutoProcessor.from_pretrained(merged)

    batch, pad_id = _test_batch(processor, tiny_run, demo_data)
    ref_batch, _ = _test_batch(bundle.processor, tiny_run, demo_data)
    for key in batch:  # the exported processor encodes exactly like the run's processor
        assert torch.equal(batch[key], ref_batch[key]), key

    merged_logits, peft_logits = _logits(model, batch), _logits(bundle.model, batch)
    torch.testing.assert_close(merged_logits, peft_logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(_greedy(model, batch, pad_id), _greedy(bundle.model, batch, pad_id))

    # The comparison above only means something if the fine-tune changed the model: the merged
    # weights must differ from the base, by the adapter and by the trained projector.
    base = AutoModelForImageTextToText.from_pretrained(tiny_run / "base_model").eval()
    assert (_logits(base, batch) - merged_logits).abs().max() > 100 * (merged_logits - peft_logits).abs().max()
    merged_params, base_params = dict(model.named_parameters()), dict(base.named_parameters())
    changed = {n for n in base_params if not torch.equal(base_params[n], merged_params[n])}
    assert any("multi_modal_projector" in n for n in changed)
    assert any("q_proj" in n for n in changed) and any("v_proj" in n for n in changed)
    assert not any("vision_tower" in n or "k_proj" in n for n in changed)


def test_merged_projector_is_the_trained_one(merged, tiny_run):
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    adapter = load_file(tiny_run / "adapter" / "adapter_model.safetensors")
    params = dict(AutoModelForImageTextToText.from_pretrained(merged).named_parameters())
    projector = {k: v for k, v in adapter.items() if "multi_modal_projector" in k}
    assert projector
    for key, value in projector.items():
        name = key.removeprefix("base_model.model.")
        assert torch.equal(params[name].detach(), value), name


def test_bf16_export_stores_bf16(tiny_run, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "bf16"
    assert main(["export", str(tiny_run), "--merge", "--dtype", "bf16", "--out", str(out)]) == 0
    with safe_open(out / "model.safetensors", "pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_adapter_export_restores_the_fine_tune(tiny_run, demo_data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from pefomed.models.run_dir import load_run

    out = tmp_path / "adapter"
    out.mkdir()  # an existing empty folder is accepted
    assert main(["export", str(tiny_run), "--out", str(out)]) == 0
    assert (out / "adapter_config.json").is_file() and (out / "chat_template.jinja").is_file()
    assert "base model" in (out / "README.md").read_text()
    base = AutoModelForImageTextToText.from_pretrained(out / "base_model")
    model = PeftModel.from_pretrained(base, out).eval()
    processor = AutoProcessor.from_pretrained(out)
    batch, _ = _test_batch(processor, tiny_run, demo_data)
    _, bundle = load_run(tiny_run, precision="fp32")
    assert torch.equal(_logits(model, batch), _logits(bundle.model, batch))


def _fake_run(tiny_run, tmp_path, method):
    run = tmp_path / f"run-{method}"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["method"]["name"] = method
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return run


@pytest.mark.parametrize("case, message", [
    ("not-a-run", "not a run folder"),
    ("non-empty-out", "folder is not empty"),
    ("out-is-a-file", "is not a folder"),
    ("prefix", "prefix tuning"),
    ("prompt", "prompt tuning"),
    ("bad-dtype", "--dtype must be one of auto, fp32, bf16, fp16; got 'int8'"),  # the declaration's check
])
def test_bad_inputs_are_one_message_and_exit_2(case, message, tiny_run, tmp_path, capsys):
    run, out, extra = tiny_run, tmp_path / "out", ["--merge"]
    if case == "not-a-run":
        run = tmp_path
    elif case == "non-empty-out":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "out-is-a-file":
        out.write_text("mine")
    elif case in ("prefix", "prompt"):
        run = _fake_run(tiny_run, tmp_path, case)
    elif case == "bad-dtype":
        extra += ["--dtype", "int8"]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["export", str(run), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err.replace("\n", "")
    assert "Traceback" not in err and err.count("error:") == 1
    # nothing written, no temporary folder left behind, the user's files untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case == "non-empty-out":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    if case == "out-is-a-file":
        assert out.read_text() == "mine"


def test_help_has_an_example(capsys):
    assert main(["export", "--help"]) == 0
    assert "Example" in capsys.readouterr().out


def test_merge_of_a_projector_only_run(tmp_path, demo_data):
    """Methods without an adapter (weights/) export too: the trained projector lands in the model."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from pefomed.cli.app import main
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    recipe = load_recipe("tiny-demo", ["method.name=projector", "train.max_steps=1", "train.batch_size=4"])
    recipe.data.dir = str(demo_data)
    run = train(recipe, tmp_path / "run").run_dir
    assert main(["export", str(run), "--merge", "--out", str(tmp_path / "out")]) == 0
    merged = dict(AutoModelForImageTextToText.from_pretrained(tmp_path / "out").named_parameters())
    for key, value in load_file(run / "weights" / "model.safetensors").items():
        assert torch.equal(merged[key].detach(), value), key
