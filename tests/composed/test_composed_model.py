"""The composed (PeFoMed / MiniGPT-v2) model and processor: which tokens reach the projector, how
the prompt is built and expanded, that loss / generation / save-load behave like a transformers
model, and that the names pefomed relies on (components, LoRA targets) resolve."""

import pytest
import torch
from composed_parts import IMAGE_SIZE, PATCH_SIZE, TEXT_HIDDEN, VISION_HIDDEN, build_parts, composed_overrides
from PIL import Image


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return build_parts(tmp_path_factory.mktemp("composed-parts"))


@pytest.fixture(scope="module")
def bundle(parts):
    from pefomed.models.loader import load_base
    from pefomed.recipe import load_recipe

    recipe = load_recipe("tiny-demo", composed_overrides(*parts))
    torch.manual_seed(0)
    return load_base("composed", recipe.model)


def _image(seed=0, size=IMAGE_SIZE):
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size, size, 3), generator=gen, dtype=torch.uint8).numpy()
    return Image.fromarray(pixels)


def _prompt(processor, text="Is there a bright spot in the image?", n_images=1):
    from pefomed.data.collate import build_prompt

    return build_prompt(processor, text, n_images)


def test_vision_weights_are_the_checkpoints(parts, bundle):
    """The encoder is loaded from the full CLIP checkpoint, not left randomly initialised."""
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(parts[0])
    ours = bundle.model.vision_tower.state_dict()
    theirs = {k.removeprefix("vision_model."): v for k, v in clip.state_dict().items() if k.startswith("vision_model.")}
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not any(p.requires_grad for p in bundle.model.vision_tower.parameters())


def test_cls_dropped_and_adjacent_patches_concatenated(bundle):
    model, processor = bundle.model, bundle.processor
    pixel_values = processor.image_processor(images=[_image(1), _image(2)], return_tensors="pt")["pixel_values"]
    patches = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 64
    seen = {}
    hook = model.multi_modal_projector.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    with torch.no_grad():
        features = model.get_image_features(pixel_values)
        encoder_out = model.vision_tower(pixel_values=pixel_values).last_hidden_state
    hook.remove()
    assert encoder_out.shape == (2, patches + 1, VISION_HIDDEN)  # CLS + 8x8 patches
    assert seen["x"].shape == (2, patches // 4, 4 * VISION_HIDDEN)  # 64 x d -> 16 x 4d
    assert features.shape == (2, patches // 4, TEXT_HIDDEN)
    # token j of the projector input = patches 4j..4j+3 side by side; CLS (index 0) is gone
    grid = encoder_out[:, 1:]
    for j in (0, 5, 15):
        expected = torch.cat([grid[:, 4 * j + i] for i in range(4)], dim=-1)
        torch.testing.assert_close(seen["x"][:, j], expected)
    assert not any(torch.allclose(seen["x"][:, j, :VISION_HIDDEN], encoder_out[:, 0]) for j in range(16))


def test_prompt_and_placeholder_expansion(bundle):
    processor, model = bundle.processor, bundle.model
    prompt = _prompt(processor)
    assert prompt == "[INST] <Img><ImageHere></Img> Is there a bright spot in the image? [/INST]"
    enc = processor(text=[prompt], images=[_image()], return_tensors="pt")
    ids = enc["input_ids"][0]
    positions = (ids == model.config.image_token_id).nonzero().flatten()
    assert len(positions) == 16 and positions[-1] - positions[0] == 15  # one contiguous run
    before = processor.tokenizer.decode(ids[: positions[0]], skip_special_tokens=True)
    after = processor.tokenizer.decode(ids[positions[-1] + 1:], skip_special_tokens=True)
    assert before.strip().endswith("<Img>") and after.strip().startswith("</Img>")
    assert enc["pixel_values"].shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(ValueError, match="placeholder"):
        processor(text=[prompt], images=[_image(), _image(1)], return_tensors="pt")


def test_loss_on_answer_and_gradients_reach_only_projector_and_llm(bundle):
    model, processor = bundle.model, bundle.processor
    enc = processor(text=[_prompt(processor)], images=[_image()], return_tensors="pt")
    labels = torch.full_like(enc["input_ids"], -100)
    labels[0, -3:] = enc["input_ids"][0, -3:]
    model.zero_grad()
    out = model(**enc, labels=labels)
    assert out.logits.shape[:2] == enc["input_ids"].shape and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.multi_modal_projector.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.vision_tower.parameters())
    model.zero_grad()
    with pytest.raises(ValueError, match="image tokens"):
        model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])


def test_the_llm_stays_causal_inside_the_composed_model(bundle):
    """A later token must not change earlier logits: otherwise training sees the answer it has to
    predict (the wrapper's config once reset the LLM's attention kernel and dropped its causal mask)."""
    model, processor = bundle.model, bundle.processor
    enc = processor(text=[_prompt(processor) + " yes"], images=[_image()], return_tensors="pt")
    changed = enc["input_ids"].clone()
    changed[0, -1] = (changed[0, -1] + 7) % 100 + 5
    with torch.no_grad():
        a = model(**enc).logits[0, :-1]
        b = model(input_ids=changed, attention_mask=enc["attention_mask"], pixel_values=enc["pixel_values"]).logits[0, :-1]
    assert torch.equal(a, b)
    assert model.language_model.config._attn_implementation is not None


def test_generate_with_kv_cache_matches_full_recompute(bundle):
    model, processor = bundle.model, bundle.processor
    prompts = [_prompt(processor), _prompt(processor, "What is shown?")]
    # left padding, as pefomed's inference collate does
    encs = [processor(text=[p], images=[_image(i)], return_tensors="pt") for i, p in enumerate(prompts)]
    width = max(e["input_ids"].shape[1] for e in encs)
    pad = processor.tokenizer.pad_token_id
    ids = torch.stack([torch.cat([torch.full((width - e["input_ids"].shape[1],), pad), e["input_ids"][0]]) for e in encs])
    mask = torch.stack([torch.cat([torch.zeros(width - e["input_ids"].shape[1], dtype=torch.long),
                                   e["attention_mask"][0]]) for e in encs])
    pixels = torch.cat([e["pixel_values"] for e in encs])
    kwargs = dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=6, do_sample=False,
                  pad_token_id=pad, eos_token_id=None)
    with torch.no_grad():
        cached = model.generate(**kwargs, use_cache=True)
        recomputed = model.generate(**kwargs, use_cache=False)
    assert cached.shape == (2, width + 6)
    assert torch.equal(cached, recomputed)
    # the image matters: another image changes the first token's distribution
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits[:, -1]
        b = model(input_ids=ids, attention_mask=mask, pixel_values=pixels.flip(0)).logits[:, -1]
    assert not torch.allclose(a, b)


def test_processor_round_trips_through_auto_processor(bundle, tmp_path):
    from transformers import AutoProcessor

    from pefomed.models.composed import ComposedProcessor

    bundle.processor.save_pretrained(tmp_path / "processor")
    loaded = AutoProcessor.from_pretrained(tmp_path / "processor")
    assert isinstance(loaded, ComposedProcessor)
    prompt = _prompt(loaded)
    assert prompt == _prompt(bundle.processor)
    a = bundle.processor(text=[prompt], images=[_image()], return_tensors="pt")
    b = loaded(text=[prompt], images=[_image()], return_tensors="pt")
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["pixel_values"], b["pixel_values"])
    assert loaded.image_token_id == bundle.model.config.image_token_id


def test_components_and_lora_targets(bundle):
    from pefomed.models.components import module_prefixes
    from pefomed.models.peft_methods import build_peft_config
    from pefomed.recipe import MethodSection

    model = bundle.model
    assert module_prefixes(model, "vision") == ["vision_tower"]
    assert module_prefixes(model, "projector") == ["multi_modal_projector"]
    assert module_prefixes(model, "llm") == ["language_model"]
    config = build_peft_config(model, MethodSection(r=4, alpha=8))
    import re

    targets = [n for n, _ in model.named_modules() if re.fullmatch(config.target_modules, n)]
    assert targets and all(n.startswith("language_model.") for n in targets)
    assert config.modules_to_save == ["multi_modal_projector"]


def test_image_size_override_and_indivisible_grid(parts):
    from pefomed.errors import UserError
    from pefomed.models.loader import load_base
    from pefomed.recipe import load_recipe

    recipe = load_recipe("tiny-demo", composed_overrides(*parts) + ["model.composed.image_size=48"])
    bundle = load_base("composed", recipe.model)
    enc = bundle.processor(text=[_prompt(bundle.processor)], images=[_image()], return_tensors="pt")
    assert enc["pixel_values"].shape[-2:] == (48, 48)
    assert (enc["input_ids"] == bundle.model.config.image_token_id).sum() == 144 // 4
    with torch.no_grad():  # position embeddings interpolated from the native 32 px grid
        assert bundle.model.get_image_features(enc["pixel_values"]).shape == (1, 36, TEXT_HIDDEN)

    recipe = load_recipe("tiny-demo", composed_overrides(*parts, merge=3))
    bundle = load_base("composed", recipe.model)
    with pytest.raises(UserError, match="merge_tokens"):
        bundle.processor(text=[_prompt(bundle.processor)], images=[_image()], return_tensors="pt")


def test_missing_paths_are_a_user_error():
    from pefomed.errors import UserError
    from pefomed.models.composed import load_composed
    from pefomed.recipe import load_recipe

    recipe = load_recipe("tiny-demo", ["model.kind=composed"])
    with pytest.raises(UserError, match="vision_name_or_path"):
        load_composed(recipe.model)
