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


class Generator:
    """Greedy (or beam) generation for lists of samples: left-padded batches, KV cache on.

    `synced=True` keeps every process generating until all are done, which ZeRO-3 needs when
    processes hold different numbers of samples or stop at different lengths.
    """

    def __init__(self, model, processor, data, image_root, max_new_tokens: int, num_beams: int = 1,
                 synced: bool = False):
        import torch

        from pefomed.data.collate import Collator

        self.model, self.processor = model, processor
        self.collator = Collator(processor, data, image_root, train=False)
        self.max_new_tokens, self.num_beams, self.synced = max_new_tokens, num_beams, synced
        params = list(model.parameters())
        self.device = params[0].device
        self.dtype = next(p for p in params if torch.is_floating_point(p)).dtype
        tokenizer = processor.tokenizer
        config_eos = _as_list(getattr(model.generation_config, "eos_token_id", None))
        self.eos = [i for i in dict.fromkeys([tokenizer.eos_token_id, *config_eos]) if i is not None]

    def __call__(self, samples: list[Sample]) -> list[str]:
        import torch

        batch = self.collator([self.collator.encode(s) for s in samples])
        batch = {k: (v.to(self.device, self.dtype) if torch.is_floating_point(v) else v.to(self.device))
                 for k, v in batch.items()}
        with torch.inference_mode():
            generated = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False,
                                            num_beams=self.num_beams, use_cache=True, eos_token_id=self.eos,
                                            pad_token_id=self.collator.pad_id, synced_gpus=self.synced)
        new_tokens = generated[:, batch["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def predict(samples: list[Sample], image_root: Path, recipe, bundle, out: str | Path,
            batch_size: int | None = None, max_new_tokens: int | None = None, with_references: bool = True) -> Path:
    from pefomed.data.templates import instruction

    if not samples:
        raise UserError("nothing to predict")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    done = _done_ids(partial) if partial.exists() else set()
    todo = [s for s in samples if s.id not in done]
    batch_size = batch_size or recipe.infer.batch_size
    generate = Generator(bundle.model, bundle.processor, recipe.data, image_root,
                         max_new_tokens or recipe.infer.max_new_tokens, recipe.infer.num_beams)
    with open(partial, "a", encoding="utf-8") as handle, progress_bar() as bar:
        task = bar.add_task("generating", total=len(samples), completed=len(done), status="")
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            for sample, text in zip(chunk, generate(chunk)):
                row = Prediction(id=sample.id, images=sample.images, question=instruction(sample, recipe.data),
                                 prediction=text, task=sample.task)
                if with_references:
                    row.reference, row.answer_type, row.meta = sample.answer, sample.answer_type, sample.meta
                handle.write(dumps(row.to_dict()) + "\n")
            handle.flush()
            bar.update(task, advance=len(chunk))
    os.replace(partial, out)
    return out


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
