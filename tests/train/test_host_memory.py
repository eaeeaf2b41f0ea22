"""A bf16 run loads its frozen base straight in bf16: no full-precision copy ever exists on the
host. A child process loads a random ~106 M-parameter model saved in bf16 (kind hf, and kind
composed from a bf16 LLM + vision encoder) through pefomed.models.loader.load_base, reads every
weight, and reports how much its peak resident memory grew (VmHWM, as tests/score's memory test
reads it). bf16 weights are 2 B/param; any fp32 copy on the way would add 4 B/param on top. The
same load in fp32 is measured too, so the test is shown to see such a copy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a
# large pytest process would report the parent's size; VmHWM is this process's own peak.
MEASURE = r"""
import json, sys

import torch

from pefomed.models.loader import load_base
from pefomed.recipe import load_recipe


def status(key):
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1]) * 1024


overrides, precision = json.loads(sys.argv[1]), sys.argv[2]
recipe = load_recipe("tiny-demo", overrides)
before = status("VmRSS:")  # libraries imported, nothing loaded
bundle = load_base(recipe.model.name_or_path or "composed", recipe.model, precision)
params = list(bundle.model.parameters())
with torch.no_grad():
    for p in params:  # read every weight: a lazily mapped file counts once its pages are touched
        p.sum()
print("RESULT", json.dumps({"growth": status("VmHWM:") - before, "numel": sum(p.numel() for p in params),
                            "dtypes": sorted({str(p.dtype) for p in params})}))
"""


def _measure(overrides: list[str], precision: str) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(overrides), precision],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT")[-1])


def _random_bf16(model_class, config, out):
    """Random weights made directly in bf16 and saved so (no fp32 copy here either): built on the
    meta device, then given bf16 storage filled from a seeded generator (quicker than the
    classes' own init, which does not matter for memory)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            model = model_class(config)
    finally:
        torch.set_default_dtype(previous)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(-0.05, 0.05, generator=generator)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(out)


@pytest.fixture(scope="module")
def bf16_models(tmp_path_factory):
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM,
                              LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor)

    from pefomed.models.bundle import quiet_transformers
    from pefomed.models.tiny import CHAT_TEMPLATE, IMAGE_TOKEN, train_tokenizer

    quiet_transformers()
    root = tmp_path_factory.mktemp("bf16-models")
    tokenizer = train_tokenizer(512)
    # ~106 M parameters: a 32k vocabulary (embedding + head: 49 M) and 8 Llama layers of width 768
    text = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
                num_attention_heads=12, num_key_value_heads=12, tie_word_embeddings=False,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4, image_size=32,
                  patch_size=4)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})

    llava = root / "llava"
    _random_bf16(LlavaForConditionalGeneration,
                 LlavaConfig(vision_config=CLIPVisionConfig(**vision, projection_dim=64), text_config=LlamaConfig(**text),
                             image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)), llava)
    LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4,
                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                   chat_template=CHAT_TEMPLATE).save_pretrained(llava)

    llm, encoder = root / "llm", root / "vision"
    _random_bf16(LlamaForCausalLM, LlamaConfig(**text), llm)
    tokenizer.save_pretrained(llm)
    _random_bf16(CLIPVisionModel, CLIPVisionConfig(**vision), encoder)
    image_processor.save_pretrained(encoder)
    return {"hf": ["model.kind=hf", f"model.name_or_path={llava}"],
            "composed": ["model.kind=composed", f"model.composed.vision_name_or_path={encoder}",
                         f"model.composed.llm_name_or_path={llm}", "model.composed.merge_tokens=4"]}


@pytest.mark.slow
def test_a_bf16_base_loads_without_a_full_precision_copy(bf16_models):
    for kind, overrides in bf16_models.items():
        got = _measure(overrides, "bf16")
        assert got["dtypes"] == ["torch.bfloat16"], kind
        assert got["numel"] > 100_000_000, kind
        bf16_bytes = 2 * got["numel"]
        # the weights themselves (2 B/param) plus slack for one tensor in flight; an fp32 copy of
        # the model on the way would add at least 4 B/param on top
        assert got["growth"] < 1.5 * bf16_bytes, (
            f"{kind}: loading {got['numel'] / 1e6:.0f} M bf16 parameters raised the peak by "
            f"{got['growth'] / 2**20:.0f} MB (bf16 weights alone: {bf16_bytes / 2**20:.0f} MB)")

    # the measurement sees a full-precision model when there is one: the same checkpoint in fp32
    fp32 = _measure(bf16_models["hf"], "fp32")
    assert fp32["dtypes"] == ["torch.float32"]
    assert fp32["growth"] > 2 * bf16_bytes * 0.95


def test_the_vision_part_of_a_full_blip2_checkpoint_is_read_tensor_by_tensor(tmp_path):
    """BLIP-2's vision class does not know its checkpoint's "vision_model." prefix, so pefomed reads
    those tensors itself (pefomed.models.composed._load_prefixed_weights), one at a time and cast
    to the run's dtype, never the whole checkpoint (its LLM is most of it)."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    from pefomed.models.composed import _load_vision

    torch.manual_seed(0)
    full = Blip2ForConditionalGeneration(Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=28, patch_size=14),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                            encoder_hidden_size=32, vocab_size=100),
        text_config=dict(model_type="opt", hidden_size=32, ffn_dim=64, num_hidden_layers=1, num_attention_heads=4,
                         vocab_size=100, word_embed_proj_dim=32),
        num_query_tokens=4))
    full.save_pretrained(tmp_path / "blip2")
    vision = _load_vision(str(tmp_path / "blip2"), torch.bfloat16)
    saved = full.state_dict()
    params = dict(vision.named_parameters())
    assert type(vision).__name__ == "Blip2VisionModel" and params
    for name, param in params.items():
        assert param.dtype == torch.bfloat16, name
        assert torch.equal(param, saved[f"vision_model.{name}"].to(torch.bfloat16)), name
