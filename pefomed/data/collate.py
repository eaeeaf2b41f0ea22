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

A prompt is a conversation (docs/prompting.md): an optional system prompt (`data.system_prompt`),
then optional solved examples (few-shot: earlier user/assistant turns, each with its images), then
the sample's own user turn. `blind=True` removes every image (or, for a family whose processor
needs one, puts a black image of the processor's input size in its place). `ablation` (an
ImageAblation, pefomed.data.image_ablation) keeps the image slot and changes what the question's own
turn shows: a constant image, or another sample's; solved examples keep their images.

Images pass through the recipe's transforms (pefomed.data.transforms) before the processor:
`encode(..., epoch=, seed=)` (the training batches) applies data.train_transform seeded by
(seed, epoch, sample id); without an epoch, data.eval_transform applies. Both default to none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pefomed.data.image_ablation import blank_like
from pefomed.data.images import load_image
from pefomed.data.transforms import ImageTransform, processor_input_size
from pefomed.instructions import instruction
from pefomed.errors import UserError
from pefomed.recipe import DataSection
from pefomed.records import Sample, resolve_image

IGNORE_INDEX = -100


class PromptTooLong(UserError):
    """A prompt that alone (image tokens included) passes data.max_length: never cut, always refused."""


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
    needs_image: a prompt without any image is refused by the processor (PaliGemma puts its image
        tokens before the text unconditionally): the blind control gets a black image instead.
    """

    answer_token_type: int = 0
    per_sample_keys: tuple[str, ...] = ()
    needs_image: bool = False


_SPLIT_IMAGES = Layout(per_sample_keys=("pixel_values", "pixel_attention_mask"))
LAYOUTS: dict[str, Layout] = {
    "PaliGemmaProcessor": Layout(answer_token_type=1, needs_image=True),
    "Idefics3Processor": _SPLIT_IMAGES,
    "SmolVLMProcessor": _SPLIT_IMAGES,
}


# Families whose processor places several images in one conversation, each at its own
# placeholder, and whose model consumes them in order: few-shot prompts (exemplar images before the
# question's) are tested on each (tests/infer/test_fewshot.py). PaliGemma has no turns and puts all
# image tokens first, so it cannot; a family not listed here is refused rather than guessed at.
FEW_SHOT_FAMILIES = ("LlavaProcessor", "Qwen2VLProcessor", "Qwen2_5_VLProcessor", "Gemma3Processor",
                     "Idefics3Processor", "SmolVLMProcessor")


def _family_names(processor) -> list[str]:
    return [cls.__name__ for cls in type(processor).__mro__]


def layout_of(processor) -> Layout:
    """The processor's family layout (a subclass inherits its parent's); LLaVA-style by default."""
    for name in _family_names(processor):
        if name in LAYOUTS:
            return LAYOUTS[name]
    return Layout()


def check_few_shot(processor) -> None:
    """A UserError naming the family when its processor cannot hold several images in one conversation."""
    if not any(name in FEW_SHOT_FAMILIES for name in _family_names(processor)):
        raise UserError(f"few-shot prompts are not supported for {type(processor).__name__}: its family cannot "
                        "place several images in one conversation (supported: "
                        f"{', '.join(FEW_SHOT_FAMILIES)})", hint="use zero-shot (shots 0) with this model")


def blank_image(processor):
    """A black RGB image of the processor's input size (crop size, else size; 224 px when unknown)."""
    from PIL import Image

    return Image.new("RGB", processor_input_size(processor, edge_only_too=True) or (224, 224))


def blind_mode(processor) -> str:
    """What the blind control shows this family: "no image", or "black image WxH" when it needs one."""
    if layout_of(processor).needs_image:
        width, height = blank_image(processor).size
        return f"black image {width}x{height}"
    return "no image"


def _pad_to(value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad `value` at the end of every axis up to `shape`."""
    if tuple(value.shape) == tuple(shape):
        return value
    out = value.new_zeros(shape)
    out[tuple(slice(0, n) for n in value.shape)] = value
    return out


@dataclass(frozen=True)
class Turn:
    """One user turn: its instruction text and image count; `answer` (a solved example's) adds the
    assistant turn after it."""

    text: str
    n_images: int
    answer: str | None = None


_PROBE = "\u2063pefomed-system-probe\u2063"


def system_turn_supported(processor) -> bool:
    """Whether the chat template renders a system message as a system turn: it names the system
    role, renders without error, and the text appears. Otherwise the system prompt is prepended to
    the first user text (the real Gemma 3 and Mistral templates do the same fold themselves)."""
    template = getattr(processor, "chat_template", None)
    if isinstance(template, dict):
        template = " ".join(str(t) for t in template.values())
    if not isinstance(template, str) or "system" not in template:
        return False
    messages = [{"role": "system", "content": [{"type": "text", "text": _PROBE}]},
                {"role": "user", "content": [{"type": "text", "text": "q"}]}]
    try:
        rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception:  # noqa: BLE001 - any template error: one that raises on a system role ("only user and assistant")
        return False
    return _PROBE in rendered


def build_conversation(processor, turns: Sequence[Turn], system_prompt: str | None = None,
                       system_turn: bool | None = None) -> str:
    """The chat-templated prompt for `turns` (exemplars first, the question last), ending where the
    answer starts. `system_turn=None` asks the template (`system_turn_supported`)."""
    messages = []
    if system_prompt and (system_turn if system_turn is not None else system_turn_supported(processor)):
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    elif system_prompt:
        # after the first turn's image placeholders, before its text: every template keeps a text
        # part's inner newlines (Gemma 3's trims only the ends)
        first, *rest = turns
        turns = [Turn(f"{system_prompt}\n\n{first.text}", first.n_images, first.answer), *rest]
    for turn in turns:
        content = [{"type": "image"} for _ in range(turn.n_images)] + [{"type": "text", "text": turn.text}]
        messages.append({"role": "user", "content": content})
        if turn.answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": turn.answer}]})
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def build_prompt(processor, text: str, n_images: int) -> str:
    """One user turn, no system prompt: the zero-shot prompt."""
    return build_conversation(processor, [Turn(text, n_images)], system_turn=False)


def _eos_id(processor) -> int:
    tokenizer = processor.tokenizer
    if tokenizer.eos_token_id is None:
        raise UserError("the model's tokenizer has no end-of-sequence token; set one in its tokenizer_config.json")
    return tokenizer.eos_token_id


class Collator:
    """`encode` one sample; `__call__` pads a list of encodings into a batch.

    train=True appends the answer and pads on the right; train=False (generation) pads on the left
    so every prompt ends where generation starts. `blind=True` encodes every prompt without its
    images (`blind_mode`). `shots` (few-shot) are solved samples put before the question; their
    image paths are absolute or relative to `data_dir`.
    """

    def __init__(self, processor, data: DataSection, data_dir: str | Path | None, train: bool, blind: bool = False,
                 ablation=None):
        self.processor = processor
        self.ablation = ablation  # an ImageAblation or None
        self.data = data
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.train = train
        self.blind = blind
        self.layout = layout_of(processor)
        self.pad_id = processor.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = _eos_id(processor)
        self.system_prompt = getattr(data, "system_prompt", None)
        self.system_turn = bool(self.system_prompt) and system_turn_supported(processor)
        self._blank = None
        self.transform = ImageTransform(data, processor)

    def image_path(self, path: str, sample_id: str) -> Path:
        """The file behind a sample's image path, never outside its folder (records.resolve_image).
        Absolute paths come only from pefomed itself (few-shot exemplars, already resolved the same
        way): read_split refuses them in a split file."""
        if self.data_dir is None or Path(path).is_absolute():
            return Path(path)
        return resolve_image(self.data_dir, path, sample_id)

    per_token_keys = PER_TOKEN_KEYS

    def _images(self, sample: Sample, train: tuple[int, int] | None = None, shot: bool = False) -> list:
        if not self.blind:
            ablation = None if shot else self.ablation  # a solved example keeps its own image
            paths = sample.images if ablation is None else ablation.images_of(sample)
            images = [load_image(self.image_path(p, sample.id)) for p in paths]
            if ablation is not None and ablation.kind == "blank":
                images = [blank_like(image) for image in images]
            return self.transform(images, sample.id, getattr(sample, "source", ""), train)
        if not self.layout.needs_image:
            return []
        if self._blank is None:
            self._blank = blank_image(self.processor)
        return [self._blank for _ in sample.images]  # same count, so the same token layout

    def encode(self, sample: Sample, shots: Sequence[Sample] = (), epoch: int | None = None,
               seed: int = 0) -> dict[str, torch.Tensor]:
        """The sample's encoding (with its answer when train=True), after the solved `shots`.
        `epoch` (with train.seed as `seed`) marks a training draw: data.train_transform applies,
        seeded by (seed, epoch, sample id); without it, data.eval_transform."""
        enc = self.encode_prompt(sample, shots, epoch, seed)
        return self.append_answer(enc, sample.answer) if self.train else enc

    def encode_with_images(self, sample: Sample, images: list,
                           shots: Sequence[tuple[Sample, list]] = ()) -> dict[str, torch.Tensor]:
        """`encode` with images already loaded (`shots` as (sample, images) pairs)."""
        enc = self._encode_prompt(sample, images, shots)
        return self.append_answer(enc, sample.answer) if self.train else enc

    def encode_prompt(self, sample: Sample, shots: Sequence[Sample] = (), epoch: int | None = None,
                      seed: int = 0) -> dict[str, torch.Tensor]:
        """The prompt alone (labels all masked), whatever `train` says: what ranking appends each
        candidate answer to. `epoch`, `seed`: as `encode`."""
        if shots:
            check_few_shot(self.processor)
        train = None if epoch is None else (seed, epoch)
        return self._encode_prompt(sample, self._images(sample, train),
                                   [(s, self._images(s, shot=True)) for s in shots])

    def _encode_prompt(self, sample: Sample, images: list, shots: Sequence[tuple[Sample, list]]):
        turns = [Turn(instruction(s, self.data), len(imgs), s.answer.strip()) for s, imgs in shots]
        turns.append(Turn(instruction(sample, self.data), len(images)))
        prompt = build_conversation(self.processor, turns, self.system_prompt, self.system_turn)
        all_images = [im for _, imgs in shots for im in imgs] + list(images)
        enc = self.processor(text=[prompt], images=all_images or None, return_tensors="pt")
        enc = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
        prompt_ids = enc["input_ids"][0]
        # each solved example is one more training-sized sample in the prompt
        limit = self.data.max_length * (1 + len(shots))
        if len(prompt_ids) > limit:
            what = f"data.max_length={self.data.max_length}" if not shots else \
                f"{limit} (data.max_length={self.data.max_length} per turn, {len(shots)} exemplars + the question)"
            raise PromptTooLong(f"sample {sample.id}: the prompt with its image tokens is {len(prompt_ids)} tokens, "
                                f"more than {what}; image tokens are never truncated",
                                hint="raise data.max_length or shorten the question")
        per_token = {k: v[0] for k, v in enc.items() if k in PER_TOKEN_KEYS}
        others = {k: v for k, v in enc.items() if k not in per_token}
        per_token["labels"] = torch.full_like(prompt_ids, IGNORE_INDEX)
        return {**per_token, **others}

    def append_answer(self, enc: dict[str, torch.Tensor], answer_text: str,
                      truncate: bool = True) -> dict[str, torch.Tensor]:
        """`enc` (a prompt from encode_prompt) with the answer and the end token appended, which are
        the only supervised (label) positions. With `truncate` the answer loses tokens from its end
        when the whole would pass data.max_length; ranking scores whole candidates (truncate=False)."""
        prompt_ids = enc["input_ids"]
        out = dict(enc)
        answer = self.processor.tokenizer(self._answer_sep(prompt_ids) + answer_text.strip(),
                                          add_special_tokens=False)["input_ids"]
        if truncate:
            answer = answer[: max(self.data.max_length - len(prompt_ids) - 1, 0)]
        answer = answer + [_eos_id(self.processor)]
        answer_t = torch.tensor(answer, dtype=prompt_ids.dtype)
        n = len(answer_t)
        for key in [k for k in enc if k in PER_TOKEN_KEYS and k != "labels"]:
            value = enc[key]
            fill = {"input_ids": answer_t, "attention_mask": torch.ones(n, dtype=value.dtype),
                    "token_type_ids": torch.full((n,), self.layout.answer_token_type, dtype=value.dtype),
                    }.get(key, torch.zeros(n, dtype=value.dtype))
            out[key] = torch.cat([value, fill])
        out["labels"] = torch.cat([enc["labels"], answer_t])
        return out

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
