"""Import a released MiniGPT-v2 or PeFoMed checkpoint as a RUN_DIR (`pefomed import`).

Both projects save what they trained with LAVIS's runner (MiniGPT-4 `minigpt4/runners/runner_base.py`,
PeFoMed `pefomed/runners/runner_base.py`, `_save_checkpoint`): a torch.save'd dict
``{"model": state_dict, "optimizer": ..., "config": cfg.to_dict(), "scaler": ..., "epoch": n}`` whose
state dict holds only the parameters that required grad. For MiniGPT-v2 / PeFoMed (vision frozen,
LoRA on the LLM) those are, under the released module names:

    llama_proj.weight, llama_proj.bias                       the linear projector (5,632 -> 4,096)
    llama_model.base_model.model.<llama name>.lora_A[.default].weight
    llama_model.base_model.model.<llama name>.lora_B[.default].weight

(`llama_model` is peft's PeftModel around LlamaForCausalLM; older peft spells the adapter weights
without the adapter name "default", newer with it: both are read.) pefomed's composed model has the
same parts under LLaVA's names (`multi_modal_projector`, `language_model`), so the import is a
rename: every released key maps to exactly one key of the adapter pefomed's training would save for
the recipe, and the import fails, naming the key, if one is left over, missing, or misshapen, or if
the checkpoint's recorded LoRA rank/alpha differ from the recipe's. The file is read with
``torch.load(weights_only=True)``: tensors and plain containers only, so a file that would need
arbitrary unpickling (code execution) is refused, never run.

The RUN_DIR written is what `pefomed train` leaves (recipe.yaml, processor/, adapter/ via
`run_dir.save_trained`), plus imported.json saying where it came from, so `pefomed infer`,
`pefomed export` and `train.init_from` read it like any run.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

from pefomed.errors import UserError
from pefomed.io import atomic_write, sha256_file, short, write_json
from pefomed.models.bundle import import_peft
from pefomed.models.loader import load_base, materialize_base
from pefomed.models.run_dir import ADAPTER_DIR, PROCESSOR_DIR, RECIPE_FILE, save_trained
from pefomed.recipe import Recipe

IMPORTED_JSON = "imported.json"
# MiniGPT-v2's and PeFoMed's LoRA alpha when their config does not set one (model_base.py: lora_alpha=16)
RELEASED_DEFAULT_ALPHA = 16
_PROJECTOR = re.compile(r"^llama_proj\.(weight|bias)$")
_LORA = re.compile(r"^llama_model\.base_model\.model\.(?P<name>.+)\.(?P<ab>lora_[AB])(?:\.default)?\.weight$")


def read_released(path: str | Path) -> tuple[dict, dict]:
    """(state dict, recorded config) of a released .pth, loaded as tensors only."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": noise beside the one message below
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
        if not reason.startswith("Unsupported operand"):
            # weights_only refuses globals it does not know (classes, functions): never executed
            raise UserError(f"{path}: refused: loading it needs arbitrary unpickling (it names Python objects beyond "
                            f"tensors and plain containers, which could run code); pefomed loads checkpoints with "
                            f"torch.load(weights_only=True) only ({reason})") from None
        # "Unsupported operand 123": the bytes are no pickle the tensors-only loader knows (a text
        # or JSON file, random bytes): nothing was run, it is just not a checkpoint
        raise UserError(f"{path}: not a readable PyTorch checkpoint{_looks_like(path)} ({reason})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            UnicodeDecodeError, MemoryError, RecursionError) as err:
        # a text or other non-pickle file fails inside the unpickler with whatever byte it met
        # (a text file starting with "e": KeyError: 101); all of them mean "not a checkpoint"
        raise UserError(f"{path}: not a readable PyTorch checkpoint{_looks_like(path)} ({type(err).__name__}: "
                        f"{str(err)[:200]})") from None
    state = obj.get("model") if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else obj
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: expected a dict of tensors, or a dict with the tensors under 'model' (the released "
                        f"runner's layout)")
    odd = next((k for k in state if not isinstance(k, str)), None)
    if odd is not None or any(not isinstance(k, str) for k in state):
        raise UserError(f"{path}: weight names must be strings, got the {type(odd).__name__} key {odd!r:.60}")
    config = obj.get("config") if isinstance(obj, dict) and isinstance(obj.get("config"), dict) else {}
    return state, config


def _unpickler_reason(err: Exception) -> str:
    """The line of torch's long weights-only message that says what stopped it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for k, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip() or (lines[k + 1] if k + 1 < len(lines) else "")
            return rest[:200]
    return (lines[-1] if lines else type(err).__name__)[:200]


def _looks_like(path: Path) -> str:
    """" (it is a text file)" when the file starts as UTF-8 text: the likely mistake of passing a
    log, a config or a README where the .pth belongs."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return ""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:  # a multi-byte character cut at the end of the 4096 bytes
        text = head[:err.start].decode("utf-8") if err.start > len(head) - 4 else ""
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return ": it is a text file"
    return ""


def map_released_keys(state: dict, where: str) -> dict:
    """Released names -> the names of pefomed's saved adapter (peft's adapter_model.safetensors layout)."""
    mapped: dict = {}
    for key, tensor in state.items():
        projector = _PROJECTOR.match(key)
        lora = _LORA.match(key)
        if projector:
            new = f"base_model.model.multi_modal_projector.{projector.group(1)}"
        elif lora:
            new = f"base_model.model.language_model.{lora.group('name')}.{lora.group('ab')}.weight"
        else:
            raise UserError(f"{where}: key {key!r} is neither the projector (llama_proj.*) nor a LoRA weight of the "
                            f"LLM (llama_model.base_model.model.*.lora_A/lora_B); nothing in pefomed's model takes it")
        if new in mapped:
            raise UserError(f"{where}: key {key!r} repeats a weight already given under another spelling ({new})")
        mapped[new] = (key, tensor)
    return mapped


def _recorded_number(model_cfg: dict, key: str, where: str) -> float | None:
    """config.model.<key> of a released file, a number or absent; anything else is named."""
    value = model_cfg.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: config.model.{key} must be a number, got {short(model_cfg.get(key), 60)}")
    return value


def _check_recorded_lora(config: dict, recipe: Recipe, where: str) -> None:
    model_cfg = config.get("model") if isinstance(config.get("model"), dict) else {}
    r = _recorded_number(model_cfg, "lora_r", where)
    alpha_value = _recorded_number(model_cfg, "lora_alpha", where)
    if r is not None and r != recipe.method.r:
        r = int(r) if float(r).is_integer() else r
        raise UserError(f"{where}: config.model.lora_r is {r} but the recipe's method.r is {recipe.method.r}")
    alpha = RELEASED_DEFAULT_ALPHA if alpha_value is None else alpha_value
    if float(alpha) != float(recipe.method.alpha):
        source = "config.model.lora_alpha" if "lora_alpha" in model_cfg else \
            f"lora_alpha (not recorded in the file: the released default {RELEASED_DEFAULT_ALPHA})"
        raise UserError(f"{where}: {source} is {alpha} but the recipe's method.alpha is {recipe.method.alpha}; "
                        f"LoRA's scale alpha/r must be the one the weights were trained with")


def _check_recipe(recipe: Recipe) -> None:
    if recipe.model.kind != "composed":
        raise UserError(f"model.kind is {recipe.model.kind!r}; a MiniGPT-v2 / PeFoMed checkpoint imports into the "
                        f"composed model (e.g. pefomed-paper/stage2-vqa-rad)")
    if recipe.method.name != "lora":
        raise UserError(f"method.name is {recipe.method.name!r}; MiniGPT-v2 and PeFoMed train plain LoRA (method.name: lora)")
    if not recipe.method.train_projector:
        raise UserError("method.train_projector is false, but the released checkpoint's projector (llama_proj) "
                        "must be kept with the adapter: set method.train_projector=true")
    if recipe.method.vision_lora:
        raise UserError("method.vision_lora is set; the released checkpoints have LoRA on the LLM only")


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"`out` {out}: exists and is not an empty folder; choose a new RUN_DIR")


def import_released(checkpoint: str | Path, recipe: Recipe, out: str | Path, precision: str = "fp32") -> Path:
    """Write RUN_DIR `out` (kind composed, method lora) holding the checkpoint's projector and LoRA.

    The base parts named by recipe.model.composed are loaded (the adapter is checked against the
    real module shapes), the renamed tensors placed into the adapter pefomed would train, and the
    run saved as `pefomed train` saves one. `precision`: dtype of the loaded base and so of the
    saved adapter (fp32 keeps the released fp32 LoRA/projector tensors bit for bit)."""
    import_peft()  # bitsandbytes without its hub-kernel lookup
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from pefomed.models.peft_methods import apply_method

    checkpoint, out = Path(checkpoint), Path(out)
    if precision not in ("fp32", "bf16", "fp16"):
        raise UserError(f"`precision` {precision!r}: choose fp32, bf16 or fp16")
    _check_recipe(recipe)
    _check_out(out)
    state, config = read_released(checkpoint)
    where = str(checkpoint)
    _check_recorded_lora(config, recipe, where)
    mapped = map_released_keys(state, where)

    bundle = load_base(materialize_base(recipe.model, out), recipe.model, precision)
    model = apply_method(bundle.model, recipe.method)
    expected = get_peft_model_state_dict(model)
    released_name = {new: old for new, (old, _) in mapped.items()}
    extra = sorted(set(mapped) - set(expected))
    if extra:
        raise UserError(f"{where}: {len(extra)} key(s) have no place in the recipe's model, e.g. "
                        f"{released_name[extra[0]]!r} (-> {extra[0]}); check method.target_modules "
                        f"({recipe.method.target_modules}) and the LLM's layer count")
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise UserError(f"{where}: {len(missing)} weight(s) of the recipe's adapter are missing from the checkpoint, "
                        f"e.g. {missing[0]}; check method.target_modules ({recipe.method.target_modules})")
    for new in sorted(mapped):
        old, tensor = mapped[new]
        want = tuple(expected[new].shape)
        if tuple(tensor.shape) != want:
            hint = ""
            if ".lora_A." in new and tensor.ndim == 2 and tensor.shape[0] != want[0]:
                hint = f" (LoRA rank {tensor.shape[0]}, the recipe's method.r is {recipe.method.r})"
            elif new.endswith(".lora_B.weight") and tensor.ndim == 2 and tensor.shape[1:] != want[1:]:
                hint = f" (LoRA rank {tensor.shape[1]}, the recipe's method.r is {recipe.method.r})"
            elif "multi_modal_projector" in new:
                hint = (" (the projector maps vision width x model.composed.merge_tokens to the LLM width: check "
                        "model.composed.* against the released model)")
            raise UserError(f"{where}: key {old!r} has shape {tuple(tensor.shape)}, the recipe's model needs {want}{hint}")
    dtype = next(iter(expected.values())).dtype
    result = set_peft_model_state_dict(model, {new: t.to(dtype) for new, (_, t) in mapped.items()})
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:  # the comparison above makes this unreachable unless peft changes its layout
        raise UserError(f"{where}: peft did not take {unexpected[0]}")

    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / RECIPE_FILE) as handle:
        handle.write(recipe.to_yaml())
    bundle.processor.save_pretrained(out / PROCESSOR_DIR)
    save_trained(model, out, stage=0, rank=0)
    write_json(out / IMPORTED_JSON, {"checkpoint": str(checkpoint.resolve()), "sha256": sha256_file(checkpoint),
                                     "keys": len(mapped), "precision": precision, "adapter": ADAPTER_DIR})
    return out


def import_checkpoint(checkpoint: str | Path, recipe: str, overrides: list[str], out: str | Path,
                      precision: str = "fp32") -> Path:
    """`pefomed import`: the recipe by file or built-in name (plus section.key=value overrides), then
    import_released."""
    from pefomed.recipe import load_recipe

    return import_released(checkpoint, load_recipe(recipe, overrides), out, precision)
