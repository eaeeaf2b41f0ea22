"""`pefomed infer`: batched generation with the KV cache, greedy by default.

Predictions are appended to PRED.jsonl.partial as each batch finishes and the file is renamed
to PRED.jsonl at the end: an interrupted run leaves no PRED.jsonl that looks complete, and
rerunning the same command resumes after the last whole line without duplicates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pefomed.console import progress_bar
from pefomed.errors import UserError
from pefomed.io import dumps
from pefomed.records import Prediction, Sample


def _done_ids(partial: Path) -> set[str]:
    """Ids already answered in an interrupted run; a torn last line is dropped."""
    done, good_bytes = set(), 0
    with open(partial, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                done.add(json.loads(raw)["id"])
            except (ValueError, KeyError):
                break
            good_bytes += len(raw)
    with open(partial, "r+b") as handle:
        handle.truncate(good_bytes)
    return done


def predict(samples: list[Sample], image_root: Path, recipe, bundle, out: str | Path,
            batch_size: int | None = None, max_new_tokens: int | None = None, with_references: bool = True) -> Path:
    import torch

    from pefomed.data.collate import Collator
    from pefomed.data.templates import instruction

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    done = _done_ids(partial) if partial.exists() else set()
    todo = [s for s in samples if s.id not in done]
    batch_size = batch_size or recipe.infer.batch_size
    max_new_tokens = max_new_tokens or recipe.infer.max_new_tokens
    processor = bundle.processor
    tokenizer = processor.tokenizer
    collator = Collator(processor, recipe.data, image_root, train=False)
    model = bundle.model
    device = next(model.parameters()).device
    dtype = next(p for p in model.parameters() if torch.is_floating_point(p)).dtype
    eos = [i for i in {tokenizer.eos_token_id, *(_as_list(model.generation_config.eos_token_id))} if i is not None]

    with open(partial, "a", encoding="utf-8") as handle, progress_bar() as bar:
        task = bar.add_task("generating", total=len(samples), completed=len(done), status="")
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            batch = collator([collator.encode(s) for s in chunk])
            batch = {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device)) for k, v in batch.items()}
            with torch.inference_mode():
                generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                           num_beams=recipe.infer.num_beams, use_cache=True,
                                           eos_token_id=eos, pad_token_id=collator.pad_id)
            new_tokens = generated[:, batch["input_ids"].shape[1]:]
            texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for sample, text in zip(chunk, texts):
                row = Prediction(id=sample.id, images=sample.images, question=instruction(sample, recipe.data),
                                 prediction=text.strip(), task=sample.task)
                if with_references:
                    row.reference, row.answer_type, row.meta = sample.answer, sample.answer_type, sample.meta
                handle.write(dumps(row.to_dict()) + "\n")
            handle.flush()
            bar.update(task, advance=len(chunk))
    if not samples:
        raise UserError("nothing to predict")
    os.replace(partial, out)
    return out


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
