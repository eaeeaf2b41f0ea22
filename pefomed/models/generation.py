"""Batched generation beside the models: what `pefomed infer` and training's periodic evaluation
both call, so training never imports the later infer stage.

Greedy (or beam) search with the KV cache over left-padded batches; each prompt may carry solved
examples before it (few-shot) and may be shown without its images (the blind control), both
encoded by pefomed.data.collate.Collator.
"""

from __future__ import annotations

import hashlib

from collections.abc import Sequence

from pefomed.records import Sample


def model_device_dtype(model):
    """The device of the model's first parameter and its floating-point dtype."""
    import torch

    params = list(model.parameters())
    return params[0].device, next(p for p in params if torch.is_floating_point(p)).dtype


def to_device(batch: dict, device, dtype) -> dict:
    """Tensors to `device`; floating-point ones (pixel values) also to the model's `dtype`."""
    import torch

    return {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device)) for k, v in batch.items()}


class Generator:
    """Greedy (or beam) generation for lists of samples: left-padded batches, KV cache on.

    `synced=True` keeps every process generating until all are done, which ZeRO-3 needs when
    processes hold different numbers of samples or stop at different lengths. `blind=True` shows
    the model no image (docs/prompting.md).
    """

    def __init__(self, model, processor, data, image_root, max_new_tokens: int, num_beams: int = 1,
                 synced: bool = False, blind: bool = False, sampling=None):
        from pefomed.data.collate import Collator

        self.model, self.processor = model, processor
        self.collator = Collator(processor, data, image_root, train=False, blind=blind)
        self.max_new_tokens, self.num_beams, self.synced = max_new_tokens, num_beams, synced
        self.device, self.dtype = model_device_dtype(model)
        tokenizer = processor.tokenizer
        config_eos = _as_list(getattr(model.generation_config, "eos_token_id", None))
        self.eos = [i for i in dict.fromkeys([tokenizer.eos_token_id, *config_eos]) if i is not None]
        # an InferSection (temperature, top_p, repetition_penalty, seed, stop); None: greedy
        self.sampling = sampling

    def _options(self, samples: list[Sample]) -> dict:
        options = {"do_sample": False}
        cfg = self.sampling
        if cfg is None:
            return options
        if cfg.temperature > 0:
            import torch

            # seeded per batch (by the seed and the batch's first id): the same command gives the
            # same samples; other batch sizes draw differently, as any batched sampler does
            torch.manual_seed(int.from_bytes(hashlib.sha256(f"{cfg.seed}:{samples[0].id}".encode()).digest()[:6], "big"))
            options.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p)
        if cfg.repetition_penalty != 1.0:
            options["repetition_penalty"] = cfg.repetition_penalty
        if cfg.stop:
            options.update(stop_strings=list(cfg.stop), tokenizer=self.processor.tokenizer)
        return options

    def _cut_at_stop(self, text: str) -> str:
        if self.sampling is None or not self.sampling.stop:
            return text
        cuts = [text.find(stop) for stop in self.sampling.stop if stop and stop in text]
        return text[:min(cuts)] if cuts else text

    def __call__(self, samples: list[Sample], shots: Sequence[Sequence[Sample]] | None = None) -> list[str]:
        """The answer to each sample; `shots[i]` are the solved examples put before samples[i]."""
        import torch

        shots = shots if shots is not None else [()] * len(samples)
        batch = self.collator([self.collator.encode(s, k) for s, k in zip(samples, shots)])
        batch = to_device(batch, self.device, self.dtype)
        with torch.inference_mode():
            generated = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                            use_cache=True, eos_token_id=self.eos, pad_token_id=self.collator.pad_id,
                                            synced_gpus=self.synced, **self._options(samples))
        new_tokens = generated[:, batch["input_ids"].shape[1]:]
        texts = self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [self._cut_at_stop(t).strip() for t in texts]


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
