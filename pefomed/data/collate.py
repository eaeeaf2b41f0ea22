"""Turn samples into model inputs: chat template, processor, answer tokens, loss mask, padding.

Each sample is encoded on its own with the model's processor (which expands the image
placeholder into the family's image tokens), then the answer tokens and an end-of-sequence
token are appended. Labels are -100 everywhere except on the answer and its end token, so the
loss covers answer tokens only (prompt, image tokens and padding are masked).

Too long? The prompt, with its image-token span, is never cut: the answer loses tokens from its
end, and a prompt that alone exceeds data.max_length is an error naming the sample. Every family
puts the whole prompt (images included) before the answer, PaliGemma's prefix/suffix layout too,
so cutting only the appended answer can never split an image-token span.

Families differ in a few data-driven ways, named in `Layout` and looked up by processor class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pefomed.data.images import load_image
from pefomed.data.templates import instruction
from pefomed.errors import UserError
from pefomed.recipe import DataSection
from pefomed.records import Sample

IGNORE_INDEX = -100
# Processor outputs with one value per token; everything else (pixel_values, image_grid_thw, ...)
# is per image and concatenated along the first axis.
PER_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "labels")


@dataclass(frozen=True)
class Layout:
    """How one family's processor output differs from the LLaVA-style default.

    answer_token_type: the token_type_ids value of appended answer tokens. Gemma 3 marks image
        tokens with 1 (text, answers included, is 0); PaliGemma marks the suffix with 1 because its
        prefix (image + question) attends bidirectionally and only the suffix is causal.
    per_sample_keys: image tensors whose first axis is the sample, not the image (Idefics3/SmolVLM
        give pixel_values (1, n_crops, C, H, W) and pixel_attention_mask (1, n_crops, H, W)):
        zero-padded to a common shape and stacked; the model drops all-zero padding crops.
        Every other non-token tensor (LLaVA's pixel_values, Qwen2-VL's flattened patches and
        image_grid_thw) is per image and concatenated along dim 0.
    """

    answer_token_type: int = 0
    per_sample_keys: tuple[str, ...] = ()


_SPLIT_IMAGES = Layout(per_sample_keys=("pixel_values", "pixel_attention_mask"))
LAYOUTS: dict[str, Layout] = {
    "PaliGemmaProcessor": Layout(answer_token_type=1),
    "Idefics3Processor": _SPLIT_IMAGES,
    "SmolVLMProcessor": _SPLIT_IMAGES,
}


def layout_of(processor) -> Layout:
    """The processor's family layout (a subclass inherits its parent's); LLaVA-style by default."""
    for cls in type(processor).__mro__:
        if cls.__name__ in LAYOUTS:
            return LAYOUTS[cls.__name__]
    return Layout()


def _pad_to(value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad `value` at the end of every axis up to `shape`."""
    if tuple(value.shape) == tuple(shape):
        return value
    out = value.new_zeros(shape)
    out[tuple(slice(0, n) for n in value.shape)] = value
    return out


def build_prompt(processor, text: str, n_images: int) -> str:
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _eos_id(processor) -> int:
    tokenizer = processor.tokenizer
    if tokenizer.eos_token_id is None:
        raise UserError("the model's tokenizer has no end-of-sequence token; set one in its tokenizer_config.json")
    return tokenizer.eos_token_id


class Collator:
    """`encode` one sample; `__call__` pads a list of encodings into a batch.

    train=True appends the answer and pads on the right; train=False (generation) pads on the left
    so every prompt ends where generation starts.
    """

    def __init__(self, processor, data: DataSection, data_dir: str | Path | None, train: bool):
        self.processor = processor
        self.data = data
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.train = train
        self.layout = layout_of(processor)
        self.pad_id = processor.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = _eos_id(processor)

    def image_path(self, path: str) -> Path:
        return Path(path) if self.data_dir is None else self.data_dir / path

    per_token_keys = PER_TOKEN_KEYS

    def encode(self, sample: Sample) -> dict[str, torch.Tensor]:
        return self.encode_with_images(sample, [load_image(self.image_path(p)) for p in sample.images])

    def encode_with_images(self, sample: Sample, images: list) -> dict[str, torch.Tensor]:
        prompt = build_prompt(self.processor, instruction(sample, self.data), len(images))
        enc = self.processor(text=[prompt], images=images or None, return_tensors="pt")
        enc = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
        prompt_ids = enc["input_ids"][0]
        if len(prompt_ids) > self.data.max_length:
            raise UserError(f"sample {sample.id}: the prompt with its image tokens is {len(prompt_ids)} tokens, "
                            f"more than data.max_length={self.data.max_length}; image tokens are never truncated",
                            hint="raise data.max_length or shorten the question")
        per_token = {k: v[0] for k, v in enc.items() if k in PER_TOKEN_KEYS}
        others = {k: v for k, v in enc.items() if k not in per_token}
        labels = torch.full_like(prompt_ids, IGNORE_INDEX)
        if self.train:
            answer = self.processor.tokenizer(self._answer_sep(prompt_ids) + sample.answer.strip(),
                                              add_special_tokens=False)["input_ids"]
            answer = answer[: max(self.data.max_length - len(prompt_ids) - 1, 0)] + [_eos_id(self.processor)]
            answer_t = torch.tensor(answer, dtype=prompt_ids.dtype)
            n = len(answer_t)
            for key, value in per_token.items():
                fill = {"input_ids": answer_t, "attention_mask": torch.ones(n, dtype=value.dtype),
                        "token_type_ids": torch.full((n,), self.layout.answer_token_type, dtype=value.dtype),
                        }.get(key, torch.zeros(n, dtype=value.dtype))
                per_token[key] = torch.cat([value, fill])
            labels = torch.cat([labels, answer_t])
        per_token["labels"] = labels
        return {**per_token, **others}

    def _answer_sep(self, prompt_ids: torch.Tensor) -> str:
        # "ASSISTANT: yes" but "<|im_start|>assistant\nyes": a space only where the prompt does not
        # already end in whitespace (PaliGemma's processor appends the newline itself)
        tail = self.processor.tokenizer.decode(prompt_ids[-1:])
        return "" if tail[-1:].isspace() else " "

    def __call__(self, encodings: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        longest = max(len(e["input_ids"]) for e in encodings)
        batch: dict[str, list[torch.Tensor]] = {}
        for enc in encodings:
            gap = longest - len(enc["input_ids"])
            for key, value in enc.items():
                if key in PER_TOKEN_KEYS:
                    fill_value = {"input_ids": self.pad_id, "labels": IGNORE_INDEX}.get(key, 0)
                    pad = torch.full((gap,), fill_value, dtype=value.dtype)
                    value = torch.cat([value, pad] if self.train else [pad, value])
                batch.setdefault(key, []).append(value)
        out = {}
        for key, values in batch.items():
            if key in PER_TOKEN_KEYS:
                out[key] = torch.stack(values)
            elif key in self.layout.per_sample_keys:
                shape = tuple(max(sizes) for sizes in zip(*(v.shape[1:] for v in values)))
                out[key] = torch.cat([_pad_to(v, (v.shape[0], *shape)) for v in values], dim=0)
            else:
                out[key] = torch.cat(values, dim=0)
        if not self.train:
            out.pop("labels", None)
        return out
