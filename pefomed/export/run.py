"""`pefomed export`: turn a RUN_DIR into a folder other tools load without pefomed.

- `merge=True`: the adapter is merged into the base weights (peft `merge_and_unload`; the trained
  `modules_to_save` copies, i.e. the projector, replace the originals), and the result is saved as
  an ordinary transformers checkpoint: config.json, model*.safetensors, generation_config.json,
  plus the processor, tokenizer and chat template. `AutoModelForImageTextToText.from_pretrained(DIR)`
  and `AutoProcessor.from_pretrained(DIR)` load it, and so can serving stacks that read the
  standard layout (vLLM).
- `merge=False`: the adapter files, the processor files, the resolved recipe and a README naming
  the base model (for the built-in tiny model its weights are copied too, since they exist
  nowhere else).

The processor files are the part other merge tools tend to lose. Here they are saved from the
run's own processor and then every file of RUN_DIR/processor the save did not write is copied as
well; before the folder is published, AutoProcessor must reload it with the same chat template.

The folder is assembled under a temporary sibling of --out and renamed into place at the end, so an
interrupted export never leaves a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from pefomed.errors import UserError
from pefomed.io import atomic_folder, write_json
from pefomed.models import run_dir as run_layout
from pefomed.models.bundle import quiet_transformers, torch_dtype
from pefomed.models.kinds import kind_of
from pefomed.models.loader import describe_base, load_base, materialize_base
from pefomed.methods import METHODS
from pefomed.models.run_dir import Run, apply_trained, load_processor, open_run
from pefomed.recipe import load_recipe

DTYPES = ("auto", "fp32", "bf16", "fp16")
# Large binary files that are never processor files (skipped when topping up processor files).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"`out` {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"`out` {out}: folder is not empty; export writes a fresh folder (choose a new path "
                        f"or remove this one)")


def _target_dtype(dtype: str, model):
    import torch

    if dtype not in DTYPES:
        raise UserError(f"`dtype` {dtype!r}: expected one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return torch_dtype(dtype)
    # "auto" keeps the dtype the base checkpoint was published in (a bf16 hub model stays bf16).
    recorded = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)
    if isinstance(recorded, str):
        recorded = getattr(torch, recorded, None)
    return recorded if isinstance(recorded, torch.dtype) else torch.float32


def _chat_template(processor) -> str | None:
    template = getattr(processor, "chat_template", None)
    if not template:
        template = getattr(getattr(processor, "tokenizer", None), "chat_template", None)
    return template or None


def _save_processor(processor, run: Run, dest: Path) -> None:
    processor.save_pretrained(dest)
    source = run.processor_dir
    if source.is_dir():
        # Anything the save did not rewrite (a sentencepiece model, special_tokens_map, a legacy
        # chat_template.json, custom processing code) is carried over unchanged.
        for path in source.rglob("*"):
            target = dest / path.relative_to(source)
            if path.is_file() and not target.exists() and not path.name.endswith(_WEIGHT_SUFFIXES):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def _verify_processor(dest: Path, expected_template: str | None) -> None:
    """Reload the processor from the new folder alone: the files must be complete on their own."""
    from transformers import AutoProcessor

    reloaded = AutoProcessor.from_pretrained(dest)
    if expected_template and _chat_template(reloaded) != expected_template:
        raise RuntimeError(f"export: the processor saved to {dest} lost its chat template")


def _check_standard_model(model) -> None:
    """A merged model is only useful if AutoModelForImageTextToText maps its config to a class."""
    from transformers import PreTrainedModel
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    auto_map = getattr(getattr(model, "config", None), "auto_map", None) or {}
    if not isinstance(model, PreTrainedModel) or (
            model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            and "AutoModelForImageTextToText" not in auto_map):
        raise UserError(f"this run's model ({type(model).__name__}) is not a standard transformers "
                        f"image-text-to-text model, so a merged export could not be loaded by "
                        f"AutoModelForImageTextToText", hint="export without `merge` (adapter + processor)")


def _fill_generation_config(model, processor) -> None:
    """Serving stacks stop on generation_config's eos; make sure it and pad are recorded."""
    tokenizer = getattr(processor, "tokenizer", processor)
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return
    if gen.eos_token_id is None and tokenizer.eos_token_id is not None:
        gen.eos_token_id = tokenizer.eos_token_id
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else gen.eos_token_id


def _write_readme(dest: Path, recipe, run: Run, merged: bool, dtype_name: str | None) -> None:
    method = recipe.method
    lines = [
        "# pefomed export", "",
        f"- source run: `{run.root.resolve()}`" + (" (its best/ weights)" if run.weights.folder.name == run_layout.BEST_DIR else ""),
        f"- base model: {describe_base(recipe.model)}",
        f"- PEFT method: `{method.name}` (r={method.r}, alpha={method.alpha}, targets={method.target_modules}, "
        f"projector trained: {method.train_projector})",
        "",
    ]
    if merged:
        lines += [
            f"The adapter (and the trained projector) are merged into the base weights, saved as {dtype_name}.",
            "Load it like any transformers checkpoint:", "",
            "```python",
            "from transformers import AutoModelForImageTextToText, AutoProcessor",
            "model = AutoModelForImageTextToText.from_pretrained(\"THIS_FOLDER\")",
            "processor = AutoProcessor.from_pretrained(\"THIS_FOLDER\")",
            "```", "",
            "Prompts must go through `processor.apply_chat_template` (the template used in training is "
            "included), with one image placeholder per image.",
        ]
    else:
        ships_base = kind_of(recipe.model).ships_base
        base = "THIS_FOLDER/base_model" if ships_base else (recipe.model.name_or_path or "BASE")
        lines += [
            "This folder holds the PEFT adapter (not merged), the processor with its chat template, and the "
            "resolved training recipe (`recipe.yaml`).",
            "The base weights are not included" + (" except for the built-in tiny model (`base_model/`)."
                                                 if ships_base else "."), "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForImageTextToText, AutoProcessor",
            f"base = AutoModelForImageTextToText.from_pretrained(\"{base}\")",
            "model = PeftModel.from_pretrained(base, \"THIS_FOLDER\")",
            "processor = AutoProcessor.from_pretrained(\"THIS_FOLDER\")",
            "```",
        ]
    (dest / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _export_merged(run: Run, recipe, dest: Path, dtype: str) -> str:
    facts = METHODS[recipe.method.name]
    if not facts.mergeable:
        raise UserError(f"`merge`: the run was trained with {facts.title} (method.name: {recipe.method.name}), "
                        f"which adds virtual tokens instead of weight updates, so there is nothing to merge into "
                        f"the base model", hint="export without `merge` to get the adapter and processor")
    # Merge in fp32 whatever the training precision: W + BA rounded once, at the final cast.
    bundle = load_base(materialize_base(recipe.model, run.root), recipe.model, "fp32")
    processor = load_processor(run, bundle)
    _check_standard_model(bundle.model)
    target = _target_dtype(dtype, bundle.model)
    if recipe.method.quantize:
        import torch

        from pefomed.console import console

        # QLoRA: the adapter learned to correct a 4-bit NF4 copy of the base; it is merged into the
        # original weights (bf16 unless --dtype says otherwise), which differ from that copy by
        # the quantisation rounding, so the merged model is close to, not equal to, the trained one
        target = torch.bfloat16 if dtype == "auto" else target
        console.print(f"[bold yellow]warning:[/] {run.root} trained its adapter on a 4-bit NF4 copy of the base "
                      f"(method.quantize={recipe.method.quantize}); the merge adds it to the unquantised base "
                      f"weights in {str(target).replace('torch.', '')}, which differ from the NF4 values it was "
                      f"trained against by the 4-bit rounding: outputs can differ slightly from the trained "
                      f"model's; score the export on your validation split before using it")
    model = apply_trained(bundle.model, run.weights)
    if run.weights.is_adapter:
        if not hasattr(model, "merge_and_unload"):
            raise UserError(f"`merge`: the adapter type {model.peft_config['default'].peft_type} cannot be merged",
                            hint="export without `merge`")
        model = model.merge_and_unload()
    model.to(target)
    model.config.dtype = target  # config.json records the dtype the weights are stored in
    model.eval()
    _fill_generation_config(model, processor)
    model.save_pretrained(dest)
    _save_processor(processor, run, dest)
    _verify_processor(dest, _chat_template(processor))
    return str(target).replace("torch.", "")


def _export_adapter(run: Run, recipe, dest: Path) -> None:
    for path in run.weights.folder.iterdir():
        if path.is_file() and path.name != "README.md":  # peft's stub card; ours replaces it
            shutil.copy2(path, dest / path.name)
    shutil.copy2(run.recipe_file, dest / run_layout.RECIPE_FILE)
    if kind_of(recipe.model).ships_base:
        base = Path(materialize_base(recipe.model, run.root))
        shutil.copytree(base, dest / "base_model")
    if run.processor_dir.is_dir():
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(run.processor_dir)
    else:  # an old run without processor/: the base model's own processor is what it trained with
        processor = load_base(materialize_base(recipe.model, run.root), recipe.model).processor
    _save_processor(processor, run, dest)
    _verify_processor(dest, _chat_template(processor))


def _publishable_modes(folder: Path) -> None:
    """mkdtemp (and some temp-file writers) create 0700/0600 entries; the published folder should
    have the modes of any folder the user creates (umask applied), so a server user can read it."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def _sole_writer_of(out: Path):
    """Held while one export assembles `out`: a second export to the same --out refuses at once,
    and the holder may remove the temporary folders of earlier exports that were killed (kill -9
    or a power cut skip their cleanup; an OS lock dies with its process, so holding it proves
    nobody is still writing them: atomic_folder's sole_writer)."""
    import fcntl

    lock_path = out.parent / f".{out.name}.export-lock"
    handle = open(lock_path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{out}: another `pefomed export` is writing this folder; wait for it to finish or "
                            f"choose another `out`") from None
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()  # unlinked while still held, so no later export waits on a stale file
        handle.close()


def export_run(run_dir: str | Path, out: str | Path, merge: bool = True, dtype: str = "auto",
               trust_remote_code: bool = False) -> Path:
    """Export RUN_DIR (or RUN_DIR/best) to `out` (a new or empty folder); returns `out`."""
    from pefomed.models.run_dir import check_remote_code

    run, out = open_run(run_dir), Path(out)
    check_out_dir(out)
    if dtype not in DTYPES:
        raise UserError(f"`dtype` {dtype!r}: expected one of {', '.join(DTYPES)}")
    recipe = load_recipe(run.recipe_file)
    check_remote_code(recipe, run.recipe_file, trust_remote_code)
    quiet_transformers()
    out.parent.mkdir(parents=True, exist_ok=True)
    with _sole_writer_of(out):
        return _assemble(run, recipe, out, merge, dtype)


def _assemble(run: Run, recipe, out: Path, merge: bool, dtype: str) -> Path:
    """Write the export into a temporary sibling of `out`, then rename it into place (pefomed.io's
    one folder writer; the caller holds `_sole_writer_of(out)`)."""
    with atomic_folder(out, writer="export", sole_writer=True) as tmp:
        if merge:
            dtype_name = _export_merged(run, recipe, tmp, dtype)
        else:
            if dtype != "auto":
                raise UserError("`dtype` applies to `merge` exports only (the adapter is copied as trained)")
            _export_adapter(run, recipe, tmp)
            dtype_name = None
        _write_readme(tmp, recipe, run, merge, dtype_name)
        write_json(tmp / "pefomed_export.json", {
            "merged": merge, "method": recipe.method.name, "model_kind": recipe.model.kind,
            "base_model": recipe.model.name_or_path if recipe.model.kind == "hf" else recipe.model.kind,
            "dtype": dtype_name, "run_dir": str(run.root.resolve()),
            "weights": str(run.weights.folder.relative_to(run.root)),
        })
        _publishable_modes(tmp)
        check_out_dir(out)  # nobody filled it while we worked (an empty `out` is removed by the swap)
    return out


def describe(out: Path) -> str:
    """One line for the CLI: what was written."""
    info = json.loads((out / "pefomed_export.json").read_text())
    kind = f"merged model ({info['dtype']})" if info["merged"] else "adapter (not merged)"
    return f"exported {kind} + processor to {out}"
