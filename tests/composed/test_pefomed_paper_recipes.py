"""Every recipe in recipes/pefomed-paper/ validates, ships as package data, and carries the
paper's settings (arXiv 2401.02797) where the schema has keys for them."""

from importlib import resources
from pathlib import Path

import pytest

from pefomed.recipe import load_recipe

FOLDER = Path(__file__).resolve().parents[2] / "recipes" / "pefomed-paper"
RECIPES = sorted(FOLDER.glob("*.yaml"))
VQA_PROMPT = ("[INST] <Img><ImageHere></Img> [vqa] Based on the image, respond to this question with a short "
              "answer: {question} [/INST]")


def test_the_five_recipes_exist():
    assert [p.stem for p in RECIPES] == ["stage1-roco", "stage2-iu-xray", "stage2-pathvqa", "stage2-slake",
                                         "stage2-vqa-rad"]


def test_recipes_ship_as_package_data():
    shipped = resources.files("pefomed.recipes") / "pefomed-paper"
    assert sorted(p.name for p in shipped.iterdir() if p.name.endswith(".yaml")) == [p.name for p in RECIPES]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_with_paper_settings(path):
    r = load_recipe(path)
    assert r.model.kind == "composed" and r.model.freeze_vision
    c = r.model.composed
    assert c.merge_tokens == 4 and c.image_size == 448 and c.vision_name_or_path and c.llm_name_or_path
    assert (r.method.name, r.method.r, r.method.alpha, r.method.dropout) == ("lora", 64, 16, 0.05)
    assert r.method.target_modules == ["q_proj", "v_proj"] and r.method.train_projector
    assert r.train.betas == (0.9, 0.999) and r.train.weight_decay == 0.05
    # run.lr_sched linear_warmup_cosine_lr is the per-epoch staircase (pefomed.train.schedule)
    assert r.train.scheduler == "epoch_cosine" and r.train.epoch_steps
    # vis_processor.train blip2_image_train; evaluation on the deterministic resize (the paper's intent)
    assert (r.data.train_transform, r.data.eval_transform) == ("random_resized_crop", "deterministic")
    assert r.data.max_length == 1024
    iu = path.stem == "stage2-iu-xray"
    assert (r.train.lr, r.train.warmup_start_lr, r.train.min_lr) == ((3e-5, 1e-6, 1e-5) if iu else (1e-5, 1e-6, 1e-6))  # iuxray_finetune_stage2.yaml: warmup_lr 1e-6
    # the full VQA prompt, as the composed processor renders it
    vqa = r.data.vqa_template.replace("{question}", "{q}")
    body = " ".join([c.image_prompt, vqa])
    assert c.prompt_template.replace("{content}", body).replace("{q}", "{question}") == VQA_PROMPT
    from pefomed.instructions import resolve

    pool = resolve(r.data.report_prompt, "data.report_prompt")
    assert isinstance(pool, list) and len(pool) > 1 and all(p.startswith("[report] ") for p in pool)
