"""Resolve the DeepSpeed config for a run: a bundled ZeRO preset (recipes/deepspeed/NAME.json)
or the user's own JSON file, with every "auto" filled from the recipe so the two never disagree."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pefomed.errors import UserError
from pefomed.recipe import TrainSection

PRESETS = ("zero0", "zero2", "zero3", "zero3_offload")


def load_template(name_or_path: str) -> dict:
    if name_or_path in PRESETS:
        text = (resources.files("pefomed.recipes") / "deepspeed" / f"{name_or_path}.json").read_text()
        return json.loads(text)
    path = Path(name_or_path)
    if not path.is_file():
        raise UserError(f"recipe key 'train.deepspeed': {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: malformed DeepSpeed JSON ({err.msg})") from None


def resolve(cfg: TrainSection, world_size: int) -> dict:
    ds = load_template(cfg.deepspeed)
    auto = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.max_grad_norm if cfg.max_grad_norm is not None else 0.0,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world_size,
    }
    for key, value in auto.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
        elif key != "gradient_clipping" and ds[key] != value:
            raise UserError(f"DeepSpeed config {cfg.deepspeed}: {key}={ds[key]} disagrees with the recipe ({value}); "
                            "set it to \"auto\" or change the recipe")
    for precision in ("bf16", "fp16"):
        section = ds.setdefault(precision, {})
        if section.get("enabled", "auto") == "auto":
            section["enabled"] = cfg.precision == precision
    return ds


def zero_stage(ds: dict) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))
