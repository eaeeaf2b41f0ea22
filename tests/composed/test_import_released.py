"""`pefomed import`: a released MiniGPT-v2 / PeFoMed checkpoint becomes a RUN_DIR.

The synthetic checkpoints have the released layout exactly (LAVIS runner's `_save_checkpoint`:
{"model": trainable state dict, "optimizer", "config", "scaler", "epoch"}, keys `llama_proj.*` and
`llama_model.base_model.model.model.layers.N.self_attn.{q,v}_proj.lora_{A,B}[.default].weight`),
built for the tiny composed parts. The imported run must give the logits of the composed model
with the same tensors placed by hand (projector copied, W + alpha/r * B @ A merged into q/v)."""

import pickle

import pytest
import torch
from composed_parts import TEXT_HIDDEN, VISION_HIDDEN, build_parts, composed_overrides
from PIL import Image

from pefomed.errors import UserError

R, ALPHA, LAYERS, MERGE = 4, 16, 2, 4


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return build_parts(tmp_path_factory.mktemp("import-parts"))


def _recipe(parts, *extra):
    from pefomed.recipe import load_recipe

    return load_recipe("tiny-demo", composed_overrides(*parts) + [
        "method.name=lora", f"method.r={R}", f"method.alpha={ALPHA}", "method.target_modules=[q_proj,v_proj]",
        "method.train_projector=true", *extra])


def _released_state(default_name=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    state = {"llama_proj.weight": torch.randn(TEXT_HIDDEN, VISION_HIDDEN * MERGE, generator=gen) * 0.05,
             "llama_proj.bias": torch.randn(TEXT_HIDDEN, generator=gen) * 0.05}
    tag = ".default" if default_name else ""
    for layer in range(LAYERS):
        for proj in ("q_proj", "v_proj"):
            base = f"llama_model.base_model.model.model.layers.{layer}.self_attn.{proj}"
            state[f"{base}.lora_A{tag}.weight"] = torch.randn(R, TEXT_HIDDEN, generator=gen) * 0.3
            state[f"{base}.lora_B{tag}.weight"] = torch.randn(TEXT_HIDDEN, R, generator=gen) * 0.3
    return state


def _save(path, state, config=None):
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]},
                "config": config if config is not None else {"model": {"arch": "pefomed", "lora_r": R, "lora_alpha": ALPHA}},
                "scaler": {"scale": 65536.0}, "epoch": 49}, path)
    return path


def _inputs(processor):
    from pefomed.data.collate import build_prompt

    gen = torch.Generator().manual_seed(3)
    image = Image.fromarray(torch.randint(0, 256, (32, 32, 3), generator=gen, dtype=torch.uint8).numpy())
    return processor(images=[image], text=[build_prompt(processor, "Is there a bright spot?", 1)], return_tensors="pt")


def _by_hand(parts, state):
    """The composed base model with the released tensors placed by hand (LoRA merged)."""
    from pefomed.models.loader import load_base

    bundle = load_base("composed", _recipe(parts).model)
    model = bundle.model
    with torch.no_grad():
        model.multi_modal_projector.weight.copy_(state["llama_proj.weight"])
        model.multi_modal_projector.bias.copy_(state["llama_proj.bias"])
        for layer in range(LAYERS):
            attn = model.language_model.model.layers[layer].self_attn
            for proj in ("q_proj", "v_proj"):
                base = f"llama_model.base_model.model.model.layers.{layer}.self_attn.{proj}"
                a, b = state[f"{base}.lora_A.default.weight"], state[f"{base}.lora_B.default.weight"]
                getattr(attn, proj).weight += (ALPHA / R) * b @ a
    return model.eval(), bundle.processor


@pytest.mark.parametrize("default_name", [True, False])
def test_imported_run_gives_the_hand_placed_logits(parts, tmp_path, default_name):
    from pefomed.cli.app import main
    from pefomed.models.run_dir import load_run

    state = _released_state(default_name)
    ckpt = _save(tmp_path / "checkpoint_49.pth", state)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(_recipe(parts).to_yaml())
    out = tmp_path / "run"
    assert main(["import", str(ckpt), str(recipe), "--out", str(out)]) == 0
    _, bundle = load_run(out, precision="fp32", device="cpu")
    hand, processor = _by_hand(parts, _released_state(True))
    inputs = _inputs(processor)
    with torch.no_grad():
        ours = bundle.model(**_inputs(bundle.processor)).logits
        theirs = hand(**inputs).logits
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)
    # the LoRA actually changes the answer: a run without it would not pass the comparison
    from pefomed.models.loader import load_base

    plain = load_base("composed", _recipe(parts).model).model.eval()
    with torch.no_grad():
        assert not torch.allclose(plain(**inputs).logits, theirs, atol=1e-3)


def test_imported_run_starts_a_stage_2_run(parts, tmp_path):
    """train.init_from reads the imported RUN_DIR: its adapter loads with nothing left over."""
    from peft import get_peft_model_state_dict

    from pefomed.models.loader import load_base
    from pefomed.models.peft_methods import apply_method
    from pefomed.models.released import import_released
    from pefomed.models.run_dir import StartingPoint

    state = _released_state()
    out = import_released(_save(tmp_path / "c.pth", state), _recipe(parts), tmp_path / "run")
    model = apply_method(load_base("composed", _recipe(parts).model).model, _recipe(parts).method)
    StartingPoint(out).load_into_adapter(model)
    loaded = get_peft_model_state_dict(model)
    assert torch.equal(loaded["base_model.model.multi_modal_projector.weight"], state["llama_proj.weight"])
    key = "base_model.model.language_model.model.layers.1.self_attn.v_proj.lora_B.weight"
    assert torch.equal(loaded[key], state["llama_model.base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight"])


def _import(parts, tmp_path, state=None, config=None, *extra):
    from pefomed.models.released import import_released

    ckpt = _save(tmp_path / "c.pth", _released_state() if state is None else state, config)
    return import_released(ckpt, _recipe(parts, *extra), tmp_path / "run")


def test_an_extra_key_is_named(parts, tmp_path):
    state = _released_state()
    state["llama_model.base_model.model.model.layers.0.self_attn.k_proj.lora_A.default.weight"] = torch.zeros(R, TEXT_HIDDEN)
    with pytest.raises(UserError, match=r"1 key\(s\) have no place.*k_proj\.lora_A\.default\.weight"):
        _import(parts, tmp_path, state)
    state = _released_state()
    state["ln_vision.weight"] = torch.ones(VISION_HIDDEN)
    with pytest.raises(UserError, match="'ln_vision.weight' is neither the projector"):
        _import(parts, tmp_path, state)


def test_a_missing_key_is_named(parts, tmp_path):
    state = _released_state()
    del state["llama_model.base_model.model.model.layers.1.self_attn.q_proj.lora_B.default.weight"]
    with pytest.raises(UserError, match=r"missing from the checkpoint, e\.g\. .*layers\.1\.self_attn\.q_proj\.lora_B"):
        _import(parts, tmp_path, state)
    state = _released_state()
    del state["llama_proj.bias"]
    with pytest.raises(UserError, match="multi_modal_projector.bias"):
        _import(parts, tmp_path, state)


def test_misshapen_keys_and_scaling_are_named(parts, tmp_path):
    state = _released_state()
    state["llama_proj.weight"] = torch.zeros(TEXT_HIDDEN, VISION_HIDDEN * 2)
    with pytest.raises(UserError, match=r"'llama_proj.weight' has shape \(64, 128\).*\(64, 256\).*merge_tokens"):
        _import(parts, tmp_path, state)
    # rank: the checkpoint's LoRA is r=4, the recipe asks for 8 (config not recorded: shapes tell)
    with pytest.raises(UserError, match=r"lora_A\.default\.weight' has shape \(4, 64\).*LoRA rank 4, the recipe's method.r is 8"):
        _import(parts, tmp_path, None, {}, "method.r=8")
    # alpha recorded in the file and different from the recipe's
    with pytest.raises(UserError, match="config.model.lora_alpha is 32 but the recipe's method.alpha is 16"):
        _import(parts, tmp_path, None, {"model": {"lora_r": R, "lora_alpha": 32}})
    # alpha not recorded: the released default (16) must match
    with pytest.raises(UserError, match="released default 16.*method.alpha is 8"):
        _import(parts, tmp_path, None, {}, "method.alpha=8")


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_needing_arbitrary_unpickling_is_refused(parts, tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"model": _released_state(), "extra": Payload()}, path)
    with pytest.raises(UserError, match="refused: loading it needs arbitrary unpickling"):
        _import_file(parts, path, tmp_path / "run")
    assert "this must never run" not in capsys.readouterr().out
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"model": Payload()}))
    with pytest.raises(UserError, match="refused|not a readable PyTorch checkpoint"):
        _import_file(parts, plain, tmp_path / "run")
    assert "this must never run" not in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def _import_file(parts, path, out):
    from pefomed.models.released import import_released

    return import_released(path, _recipe(parts), out)


def test_wrong_recipe_and_occupied_out_are_user_errors(parts, tmp_path):
    with pytest.raises(UserError, match="method.name is 'dora'"):
        _import(parts, tmp_path, None, None, "method.name=dora")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(UserError, match="not an empty folder"):
        _import(parts, tmp_path)
