"""Batched generation beside the models: what `pefomed infer` and training's periodic evaluation
both call, so training never imports the later infer stage.

Greedy (or beam) search with the KV cache over left-padded batches; each prompt may carry solved
examples before it (few-shot) and may be shown without its images (the blind control), both
encoded by pefomed.data.collate.Collator.
"""

from __future__ import annotations

import hashlib

from collections.abc import Sequence

from pefomed.metrics.reasoning import extract_answer
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
    the model no image; `ablation` (pefomed.data.image_ablation.ImageAblation) a blank or another
    sample's image (docs/prompting.md).
    """

    def __init__(self, model, processor, data, image_root, max_new_tokens: int, num_beams: int = 1,
                 synced: bool = False, blind: bool = False, sampling=None, ablation=None):
        from pefomed.data.collate import Collator

        self.model, self.processor = model, processor
        self.collator = Collator(processor, data, image_root, train=False, blind=blind, ablation=ablation)
        self.max_new_tokens, self.num_beams, self.synced = max_new_tokens, num_beams, synced
        self.device, self.dtype = model_device_dtype(model)
        tokenizer = processor.tokenizer
        config_eos = _as_list(getattr(model.generation_config, "eos_token_id", None))
        self.eos = [i for i in dict.fromkeys([tokenizer.eos_token_id, *config_eos]) if i is not None]
        # an InferSection (temperature, top_p, repetition_penalty, seed, stop, num_return_sequences);
        # None: greedy, one answer
        self.sampling = sampling
        self.num_return_sequences = getattr(sampling, "num_return_sequences", 1) if sampling is not None else 1
        check_return_sequences(self.num_return_sequences, num_beams,
                               sampling is not None and sampling.temperature > 0)

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
        if self.sampling is None:
            return text
        if self.sampling.stop:
            cuts = [text.find(stop) for stop in self.sampling.stop if stop and stop in text]
            text = text[:min(cuts)] if cuts else text
        # infer.answer_template: a reasoning template's answer is what infer writes and score reads
        return extract_answer(text, getattr(self.sampling, "answer_template", "none"))

    def encode(self, samples: Sequence[Sample], shots: Sequence[Sequence[Sample]] | None = None) -> dict:
        """The left-padded CPU batch of `samples` (images decoded, prompts encoded): the part of
        generation that DataLoader workers can do ahead of the model (pefomed.infer.batches)."""
        shots = shots if shots is not None else [()] * len(samples)
        return self.collator([self.collator.encode(s, k) for s, k in zip(samples, shots)])

    def generate_encoded(self, batch: dict, samples: Sequence[Sample],
                         min_new_tokens: int | None = None) -> list[list[str]]:
        """Every returned sequence of each sample of an `encode`d batch: num_return_sequences of
        them, best first (beam search: by beam score; sampling: in the order drawn).
        `min_new_tokens` forces that length (the batch-size probe measures the longest answers)."""
        import torch

        batch = to_device(batch, self.device, self.dtype)
        extra = {"min_new_tokens": min_new_tokens} if min_new_tokens else {}
        if self.num_return_sequences > 1:
            extra["num_return_sequences"] = self.num_return_sequences
        with torch.inference_mode():
            generated = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                            use_cache=True, eos_token_id=self.eos, pad_token_id=self.collator.pad_id,
                                            synced_gpus=self.synced, **self._options(list(samples)), **extra)
        new_tokens = generated[:, batch["input_ids"].shape[1]:]
        texts = [self._cut_at_stop(t).strip()
                 for t in self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        n = self.num_return_sequences  # generate returns each sample's sequences one after the other
        return [texts[i * n:(i + 1) * n] for i in range(len(samples))]

    def __call__(self, samples: list[Sample], shots: Sequence[Sequence[Sample]] | None = None) -> list[str]:
        """The answer to each sample (its first sequence); `shots[i]` are the solved examples put
        before samples[i]."""
        return [texts[0] for texts in self.generate_encoded(self.encode(samples, shots), samples)]


def check_return_sequences(n: int, num_beams: int, sampling: bool) -> None:
    """Several answers per question come from beam search (the n best of num_beams >= n beams) or
    from sampling; greedy decoding has only one (transformers refuses it)."""
    from pefomed.errors import UserError

    if n < 1:
        raise UserError(f"infer.num_return_sequences must be at least 1, got {n}", keys=["infer.num_return_sequences"])
    if n > 1 and num_beams > 1 and n > num_beams:
        raise UserError(f"infer.num_return_sequences={n} is more than infer.num_beams={num_beams}: beam search "
                        f"returns at most its beams", hint=f"raise infer.num_beams to {n} or more",
                        keys=["infer.num_return_sequences", "infer.num_beams"])
    if n > 1 and num_beams == 1 and not sampling:
        raise UserError(f"infer.num_return_sequences={n} needs beam search or sampling (greedy decoding has one "
                        f"answer)", hint=f"set infer.num_beams to {n} (the {n} best beams) or infer.temperature to 0.7 "
                                         f"(samples)", keys=["infer.num_return_sequences", "infer.num_beams", "infer.temperature"])


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
