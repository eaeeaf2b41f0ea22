"""`model.kind: hf` fine-tunes and infers every vision-language family users bring.

Each family is a tiny checkpoint built in code (tests/models/tiny_families.py) with its own
processor, chat template and image-token expansion. Per family: two optimizer steps through the
real DeepSpeed loop, then inference from RUN_DIR, plus collate checks that matter for that
family's layout (image spans never truncated, batched == one-by-one).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from pefomed.cli.app import main

sys.path.insert(0, str(Path(__file__).parent))
from tiny_families import BUILDERS  # noqa: E402

pytestmark = pytest.mark.slow

FAMILIES = [
    "llava", "qwen2_vl", "qwen2_5_vl", "gemma3", "idefics3", "paligemma",
    pytest.param("smolvlm", marks=pytest.mark.skipif(importlib.util.find_spec("num2words") is None,
                                                     reason="SmolVLMProcessor needs the num2words package")),
]

PROCESSORS = {"llava": "LlavaProcessor", "qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor",
              "gemma3": "Gemma3Processor", "idefics3": "Idefics3Processor", "paligemma": "PaliGemmaProcessor",
              "smolvlm": "SmolVLMProcessor"}


def recipe_for(model_dir: Path, data_dir: Path, max_length: int = 256):
    from pefomed.recipe import validate_recipe

    return validate_recipe({
        "model": {"kind": "hf", "name_or_path": str(model_dir)},
        "method": {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "data": {"dir": str(data_dir), "max_length": max_length},
        "train": {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "deepspeed": "zero2", "seed": 0},
        "infer": {"batch_size": 4, "max_new_tokens": 3},
    })


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("spot") / "data", n_train=8, n_test=4)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory, data_dir):
    """(name, tiny checkpoint folder, RUN_DIR trained two steps on it), once per family."""
    from pefomed.train.loop import train

    name = request.param
    root = tmp_path_factory.mktemp(name)
    model_dir = BUILDERS[name](root / "checkpoint")
    run_dir = root / "run"
    train(recipe_for(model_dir, data_dir), run_dir)
    return name, model_dir, run_dir


def test_trains_two_steps_with_lora_on_the_llm_and_the_projector_saved(family):
    from safetensors.torch import load_file

    from pefomed.models.components import component_of

    name, _, run_dir = family
    log = [json.loads(line) for line in open(run_dir / "train_log.jsonl")]
    assert [row["step"] for row in log] == [1, 2]
    assert all(math.isfinite(row["loss"]) and row["loss"] > 0 for row in log)

    parts = json.loads((run_dir / "trainable.json").read_text())["components"]
    assert set(parts) == {"vision", "projector", "llm"}, f"{name}: parameters pefomed cannot place: {parts}"
    assert parts["vision"]["trainable"] == 0 and parts["vision"]["total"] > 0
    assert parts["projector"]["trainable"] > 0
    assert parts["llm"]["trainable"] > 0

    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    lora = [k for k in weights if "lora_" in k]
    assert lora and {component_of(k) for k in lora} == {"llm"}, f"{name}: LoRA outside the LLM"
    assert not [k for k in weights if component_of(k) == "vision"], f"{name}: vision-tower weights in the adapter"
    projector = [k for k in weights if component_of(k) == "projector"]
    assert projector, f"{name}: the projector must be saved with the adapter"


def test_infers_one_row_per_test_sample(family, data_dir, tmp_path):
    from pefomed.infer.generate import predict
    from pefomed.models.run_dir import load_run
    from pefomed.records import read_split

    name, _, run_dir = family
    recipe, bundle = load_run(run_dir)
    assert type(bundle.processor).__name__ == PROCESSORS[name], "the family's own processor comes back"
    samples = read_split(data_dir, "test")
    out = predict(samples, data_dir, recipe, bundle, tmp_path / "pred.jsonl")
    rows = [json.loads(line) for line in open(out)]
    assert [r["id"] for r in rows] == [s.id for s in samples]
    assert all(isinstance(r["prediction"], str) and r["reference"] in ("yes", "no") for r in rows)

    # the command users run reads the same RUN_DIR and writes the same rows
    cli_out = tmp_path / "cli.jsonl"
    assert main(["infer", str(run_dir), "--data", str(data_dir), "--out", str(cli_out)]) == 0
    assert [json.loads(line) for line in open(cli_out)] == rows


@pytest.fixture(scope="module")
def processor_and_model(family):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    _, model_dir, _ = family
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    return AutoProcessor.from_pretrained(model_dir), model


def _sample(sid: str, image: str, answer: str):
    from pefomed.records import Sample

    return Sample(id=sid, task="vqa", images=[image], question="Is there a bright spot in the image?",
                  answer=answer, answer_type="closed")


def _image_token_ids(model) -> set[int]:
    """The id the model replaces by image features (Gemma 3's soft token, not its <start_of_image>)."""
    config = model.config
    found = getattr(config, "image_token_id", None)
    found = found if found is not None else getattr(config, "image_token_index", None)
    assert found is not None
    return {int(found)}


def test_too_long_sample_loses_answer_tokens_only(family, processor_and_model, data_dir):
    from pefomed.data.collate import IGNORE_INDEX, Collator
    from pefomed.errors import UserError

    name, model_dir, _ = family
    processor, model = processor_and_model
    long = _sample("long-one", "images/train_00000.png", "a very long answer " * 20)
    prompt_only = Collator(processor, recipe_for(model_dir, data_dir).data, data_dir, train=False).encode(long)
    n_prompt = len(prompt_only["input_ids"])
    image_ids = _image_token_ids(model)
    n_image = sum(int(t) in image_ids for t in prompt_only["input_ids"])
    assert n_image > 0, f"{name}: no image tokens found in the prompt"

    enc = Collator(processor, recipe_for(model_dir, data_dir, max_length=n_prompt + 4).data, data_dir,
                   train=True).encode(long)
    assert len(enc["input_ids"]) == n_prompt + 4
    assert torch.equal(enc["input_ids"][:n_prompt], prompt_only["input_ids"]), "the prompt must be kept whole"
    assert sum(int(t) in image_ids for t in enc["input_ids"]) == n_image
    supervised = enc["labels"] != IGNORE_INDEX
    assert not supervised[:n_prompt].any() and supervised[n_prompt:].all()
    assert int(enc["labels"][-1]) == processor.tokenizer.eos_token_id
    for key in ("token_type_ids", "mm_token_type_ids", "attention_mask"):
        if key in enc:
            assert len(enc[key]) == len(enc["input_ids"]), key

    # the token-type channel follows the family's meaning over prompt and answer alike
    if name == "paligemma":
        # prefix (image + question) 0, suffix (answer + eos) 1: the processor's own suffix layout
        assert torch.equal(enc["token_type_ids"], (~torch.arange(len(enc["input_ids"])).lt(n_prompt)).long())
    else:
        is_image = torch.tensor([int(t) in image_ids for t in enc["input_ids"]])
        for key in ("token_type_ids", "mm_token_type_ids"):
            if key in enc:  # Gemma 3 / Qwen2-VL: 1 exactly on image tokens
                assert torch.equal(enc[key] != 0, is_image), key

    with pytest.raises(UserError, match="sample long-one"):
        Collator(processor, recipe_for(model_dir, data_dir, max_length=n_prompt - 1).data, data_dir,
                 train=True).encode(long)


def test_paligemma_encoding_matches_its_processor_suffix_layout(family, processor_and_model, data_dir):
    """Our prompt + appended answer is exactly what PaliGemmaProcessor(text, images, suffix=answer) builds."""
    from pefomed.data.collate import Collator, build_prompt
    from pefomed.data.images import load_image

    name, model_dir, _ = family
    if name != "paligemma":
        pytest.skip("PaliGemma's prefix/suffix layout only")
    processor, _ = processor_and_model
    sample = _sample("s", "images/train_00001.png", "no")
    enc = Collator(processor, recipe_for(model_dir, data_dir).data, data_dir, train=True).encode(sample)
    prompt = build_prompt(processor, sample.question, 1)
    ref = processor(text=[prompt], images=[load_image(data_dir / sample.images[0])], suffix=["no"],
                    return_tensors="pt")
    assert torch.equal(enc["input_ids"], ref["input_ids"][0])
    assert torch.equal(enc["token_type_ids"], ref["token_type_ids"][0])
    assert torch.equal(enc["labels"], ref["labels"][0])


def test_a_padded_batch_computes_what_each_sample_computes_alone(family, processor_and_model, tmp_path):
    """Different image sizes (Idefics3 crop counts, Qwen2-VL patch grids) and answer lengths in one
    batch: every real position's logits equal those of the sample run on its own."""
    from pefomed.data.collate import Collator

    name, model_dir, _ = family
    processor, model = processor_and_model
    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 32), (30, 30, 30)).save(tmp_path / "images" / "square.png")
    Image.new("RGB", (64, 32), (200, 20, 20)).save(tmp_path / "images" / "wide.png")
    samples = [_sample("a", "images/square.png", "yes"),
               _sample("b", "images/wide.png", "no, there is no bright spot anywhere")]
    collator = Collator(processor, recipe_for(model_dir, tmp_path).data, tmp_path, train=True)
    encodings = [collator.encode(s) for s in samples]
    batch = collator(encodings)
    assert batch["input_ids"].shape[0] == 2
    with torch.no_grad():
        together = model(**batch).logits
        for i, enc in enumerate(encodings):
            alone = model(**collator([enc])).logits[0]
            n = len(enc["input_ids"])
            assert torch.allclose(together[i, :n], alone, atol=1e-4), f"{name}: sample {i} differs in a batch"
    # the loss is over answer tokens only, and finite
    assert math.isfinite(model(**batch).loss.item())


def test_batched_generation_on_mixed_image_sizes_matches_one_at_a_time(family, tmp_path):
    """Left-padded generation with different image sizes in one batch (Idefics3 crop counts,
    Qwen2-VL patch grids, prompt lengths) answers exactly what each image gets alone."""
    from pefomed.infer.generate import predict
    from pefomed.models.run_dir import load_run
    from pefomed.infer.sources import folder_samples

    _, _, run_dir = family
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, size in enumerate([(32, 32), (64, 32), (20, 44), (32, 32)]):
        Image.new("RGB", size, (40 * i, 250 - 40 * i, 90)).save(folder / f"{i}.png")
    recipe, bundle = load_run(run_dir)
    samples, root = folder_samples(folder, "Is there a bright spot in the image?")
    samples[-1].question = "Is there a bright spot somewhere in this image, yes or no?"  # a longer prompt
    rows = {}
    for batch_size in (4, 1):
        out = predict(samples, root, recipe, bundle, tmp_path / f"b{batch_size}.jsonl", batch_size=batch_size,
                      with_references=False)
        rows[batch_size] = [json.loads(line) for line in open(out)]
    assert [r["id"] for r in rows[4]] == ["0.png", "1.png", "2.png", "3.png"]
    assert [r["prediction"] for r in rows[4]] == [r["prediction"] for r in rows[1]]


def test_a_checkpoint_that_is_not_image_text_to_text_is_a_user_error(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from pefomed.errors import UserError
    from pefomed.models.loader import load_base
    from pefomed.recipe import ModelSection

    folder = tmp_path / "text-only"
    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(folder)
    BUILDERS["llava"](tmp_path / "llava")  # borrow a real processor so only the model class is wrong
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json", "chat_template.jinja"):
        if (tmp_path / "llava" / name).exists():
            (folder / name).write_bytes((tmp_path / "llava" / name).read_bytes())
    with pytest.raises(UserError, match="text-only.*image-text-to-text"):
        load_base(str(folder), ModelSection(kind="hf", name_or_path=str(folder)))


def test_answer_tokens_never_leak_into_the_positions_that_predict_them(family, processor_and_model, tmp_path):
    """Causality of the training input: changing the answer must not change any logit before it
    (a model whose LLM lost its causal mask would learn to copy the answer)."""
    from pefomed.data.collate import IGNORE_INDEX, Collator

    name, model_dir, _ = family
    processor, model = processor_and_model
    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 32), (30, 30, 30)).save(tmp_path / "images" / "a.png")
    collator = Collator(processor, recipe_for(model_dir, tmp_path).data, tmp_path, train=True)
    yes = collator([collator.encode(_sample("a", "images/a.png", "yes"))])
    no = collator([collator.encode(_sample("a", "images/a.png", "no"))])
    first_answer = int((yes["labels"][0] != IGNORE_INDEX).nonzero()[0])
    n = min(yes["input_ids"].shape[1], no["input_ids"].shape[1])
    differ = int((yes["input_ids"][0, :n] != no["input_ids"][0, :n]).nonzero()[0])
    assert differ >= first_answer, "the prompts must be identical; only the answers differ"
    with torch.no_grad():
        a = model(**yes).logits[0, :differ]
        b = model(**no).logits[0, :differ]
    assert torch.allclose(a, b, atol=1e-5), f"{name}: the answer is visible before it is predicted"
