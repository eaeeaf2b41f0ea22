"""recipes/med-r1/: Med-R1's (arXiv 2503.13939) GRPO settings for Qwen2-VL-2B on VQA-RAD's closed
questions. The recipe validates (as `pefomed train` loads it, built-in name included), GRPO accepts
it, it ships as package data, each value is the one its comment cites from the released code
(github.com/Yuxiang-Lai117/Med-R1, TRL 0.14.0 and transformers' defaults), and every key carries
its citation."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from pefomed.recipe import load_recipe

FILE = Path(__file__).resolve().parents[2] / "recipes" / "med-r1" / "qwen2-vl-2b-vqa-rad-closed.yaml"
NAME = "med-r1/qwen2-vl-2b-vqa-rad-closed"

# key: (value, the citation its comment must carry)
CITED = {
    "model.name_or_path": ("Qwen/Qwen2-VL-2B-Instruct", "Qwen2-VL-2B-Instruct"),
    "method.name": ("full", "no --use_peft"),
    "train.objective": ("grpo", "[grpo]"),
    "train.epochs": (1, "--num_train_epochs 1"),
    "train.batch_size": (2, "--per_device_train_batch_size 2"),
    "train.grad_accum": (2, "--gradient_accumulation_steps 2"),
    "train.lr": (1e-6, "[trl] learning_rate 1e-6"),
    "train.scheduler": ("linear", "[hf] lr_scheduler_type linear"),
    "train.warmup_steps": (0, "[hf] warmup_steps 0"),
    "train.weight_decay": (0.0, "[hf] weight_decay 0.0"),
    "train.max_grad_norm": (1.0, "[hf] max_grad_norm 1.0"),
    "train.seed": (42, "[hf] seed 42"),
    "train.precision": ("bf16", "--bf16"),
    "train.deepspeed": ("zero2", "ds_zero2.json"),
    "train.gradient_checkpointing": (False, "--gradient_checkpointing false"),
    "train.save_every": (1000, "--save_steps 1000"),
    "train.grpo.num_generations": (4, "--num_generations 4"),
    "train.grpo.temperature": (1.0, "temperature=1"),
    "train.grpo.top_p": (1.0, "no top_p"),
    "train.grpo.max_new_tokens": (256, "[trl] max_completion_length 256"),
    "train.grpo.loss": ("grpo", "token mean"),
    "train.grpo.updates_per_rollout": (1, "one optimizer step per rollout"),
    "train.grpo.answer_reward": (1.0, "[accuracy, format]"),
    "train.grpo.format_reward": (1.0, "<think>"),
    "data.max_length": (1024, "--max_prompt_length 1024"),
    "data.answer_types": (["closed"], "closed"),
    "infer.answer_template": ("think_answer", "[eval]"),
    "infer.max_new_tokens": (256, "max_new_tokens=256"),
    "infer.temperature": (0.0, "do_sample=False"),
}


def _get(recipe, key: str):
    value = recipe
    for part in key.split("."):
        value = getattr(value, part)
    return list(value) if isinstance(value, (list, tuple)) else value


def test_the_recipe_validates_and_grpo_accepts_it():
    from pefomed.train.grpo_step import check_recipe

    recipe = load_recipe(NAME)  # the built-in name, as `pefomed train med-r1/...` resolves it
    assert recipe == load_recipe(FILE)
    check_recipe(recipe)  # what GRPO refuses before a model loads (beta > 0 with method full, ...)
    assert recipe.model.kind == "hf" and not recipe.model.freeze_vision
    assert recipe.method.full_parts == ["vision", "projector", "llm"]  # Med-R1 freezes nothing
    template = recipe.data.vqa_template
    assert "{question}" in template and "<think>...</think>" in template and "<answer>...</answer>" in template
    shipped = resources.files("pefomed.recipes") / "med-r1"
    assert [p.name for p in shipped.iterdir() if p.name.endswith(".yaml")] == [FILE.name]


@pytest.mark.parametrize("key", sorted(CITED))
def test_each_value_is_the_one_its_comment_cites(key):
    value, citation = CITED[key]
    assert _get(load_recipe(FILE), key) == value
    # the key's line, or the comment lines right above it, carry the citation
    leaf = key.rsplit(".", 1)[1]
    lines = FILE.read_text().splitlines()
    section = key.split(".")[0]
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{section}:"))
    at = next(i for i in range(start, len(lines)) if re.match(rf"\s+{re.escape(leaf)}:", lines[i]))
    context = [lines[at]]
    j = at - 1
    while j >= 0 and lines[j].strip().startswith("#"):
        context.append(lines[j])
        j -= 1
    assert any(citation in line for line in context), (key, context)


def test_every_key_of_the_file_carries_a_comment():
    """No uncited value: each key line has a comment, on it or right above it (a section line
    such as `train:` excepted)."""
    lines = FILE.read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"(\s*)([a-z_]+):(.*)", line)
        if not match or not match.group(3).split("#")[0].strip():
            continue  # a comment or a section header
        above = lines[i - 1].strip() if i else ""
        assert "#" in match.group(3) or above.startswith("#"), f"line {i + 1} has no citation: {line}"
