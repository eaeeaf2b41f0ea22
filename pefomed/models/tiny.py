"""The embedded default model: a tiny LLaVA (CLIP vision tower + 2-layer MLP projector + Llama)
built deterministically in code, with a byte-level BPE tokenizer trained offline on text shipped
with the package. Nothing is downloaded: `build_tiny` writes an ordinary transformers folder
that AutoModelForImageTextToText / AutoProcessor load like any hub checkpoint.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import Field, model_validator

from pefomed.models.bundle import quiet_transformers
from pefomed.models.kinds import ModelKind, register
from pefomed.recipe import MAX_IMAGE_SIDE, SEED_MAX, ModelSection, RecipeSection

IMAGE_TOKEN = "<image>"
LM_HEAD_STD = 0.3
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN]

# 256 byte-level symbols + SPECIAL_TOKENS (5): the tokenizer's size before any merge
TINY_MIN_VOCAB = 256 + len(SPECIAL_TOKENS)
# Image tokens of one image: the vision attention is quadratic in them, and each is one LLM
# position (data.max_length is 1024 by default); 4096 is the tiny model's 64 x 64 patch grid.
TINY_MAX_PATCHES = 4096


class TinyConfig(RecipeSection):
    """Sizes of the built-in tiny LLaVA (vision CLIP + Llama), built deterministically in code
    (recipe section model.tiny)."""

    # A patch grid that does not divide the image is fine (CLIP's convolution and the processor
    # both floor image_size / patch_size); a patch larger than the image leaves no patch at all.
    image_size: int = Field(32, gt=0, le=MAX_IMAGE_SIDE, description="pixels on a side the processor resizes and "
                                                                      "crops every image to")
    # 64 image tokens: small patches keep a small bright finding inside whole patches
    patch_size: int = Field(4, gt=0, le=MAX_IMAGE_SIDE, description="pixels on a side of one vision patch; each "
                                                                     "patch is one image token of the LLM")
    # widths and depths: the tiny model is built in fp32 on the host; 4096 wide x 64 layers is
    # already a 13B-parameter model, no longer "tiny" and past most hosts' memory
    vision_hidden: int = Field(64, gt=0, le=4096, description="width of the CLIP vision tower (its MLP is twice "
                                                               "as wide)")
    # 0 layers: the tower has no hidden state to take features from
    vision_layers: int = Field(2, gt=0, le=64, description="transformer layers of the vision tower")
    text_hidden: int = Field(64, gt=0, le=4096, description="width of the Llama LLM (its MLP is three times as wide)")
    # 0 layers: no q_proj/v_proj for LoRA to adapt
    text_layers: int = Field(2, gt=0, le=64, description="transformer layers of the LLM")
    heads: int = Field(4, gt=0, le=4096, description="attention heads of both towers: divides both widths, and "
                                                     "text_hidden / heads is even")
    # The byte-level BPE has 256 byte symbols and 5 special tokens before any merge: a smaller
    # vocab_size is silently that size. The bundled corpus yields about 3,800 tokens, so a larger
    # value gives those; 65,536 only stops a typo (the trainer overflows on huge values).
    vocab_size: int = Field(512, ge=TINY_MIN_VOCAB, le=65536, description="tokens of the byte-level BPE trained "
                                                                          "on the bundled corpus (at most ~3,800 "
                                                                          "are learnt from it)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="torch.manual_seed of the build: the same seed, the same "
                                                        "weights")

    @model_validator(mode="after")
    def _sizes_fit_together(self):
        for width in ("vision_hidden", "text_hidden"):
            if getattr(self, width) % self.heads:
                raise ValueError(f"model.tiny.heads={self.heads} must divide model.tiny.{width} "
                                 f"({getattr(self, width)}): each attention head takes an equal share of the width")
        if (self.text_hidden // self.heads) % 2:
            # Llama's rotary position embedding rotates pairs of dimensions of each head
            raise ValueError(f"model.tiny.text_hidden / model.tiny.heads = {self.text_hidden // self.heads} must be "
                             f"even (rotary position embeddings rotate pairs of each head's dimensions)")
        if self.patch_size > self.image_size:
            raise ValueError(f"model.tiny.patch_size={self.patch_size} is larger than model.tiny.image_size="
                             f"{self.image_size}: the image would have no patch")
        patches = (self.image_size // self.patch_size) ** 2
        if patches > TINY_MAX_PATCHES:
            raise ValueError(f"model.tiny.image_size={self.image_size} with patch_size={self.patch_size} gives "
                             f"{patches:,} image tokens per image, over {TINY_MAX_PATCHES:,} (a 64 x 64 grid)")
        return self

# A plain USER/ASSISTANT template in the LLaVA-1.5 style; one <image> per image in the message.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | upper }}: "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def corpus_lines() -> list[str]:
    """The bundled text the tokenizer is trained on (package data, never read from disk elsewhere)."""
    text = (resources.files("pefomed") / "resources" / "tiny_corpus.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def train_tokenizer(vocab_size: int):
    """Byte-level BPE, so any text (any language) tokenizes without unknown tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_lines(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", extra_special_tokens={"image_token": IMAGE_TOKEN})


def build_tiny(cfg: TinyConfig, out_dir: str | Path) -> Path:
    """Build the tiny model + processor from `cfg` and save them to `out_dir` (deterministic)."""
    import torch

    quiet_transformers()
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tokenizer = train_tokenizer(cfg.vocab_size)
    image_processor = CLIPImageProcessor(size={"shortest_edge": cfg.image_size},
                                         crop_size={"height": cfg.image_size, "width": cfg.image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=cfg.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_hidden * 2,
                              num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.heads,
                              image_size=cfg.image_size, patch_size=cfg.patch_size, projection_dim=cfg.vision_hidden)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_hidden * 3,
                       num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
                       max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_layer=-1, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu")
    # A private generator keeps the build identical whatever the caller's global RNG state.
    devices = []  # fork_rng on CPU only
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)
        model = LlavaForConditionalGeneration(config)
        # A random head at the usual 0.02 init can only emit near-uniform logits (|logit| <~ 1.3
        # after the frozen final norm), so a frozen tiny LLM could never answer confidently.
        # Pretrained LLMs have a head of useful scale; this gives the tiny one the same.
        model.lm_head.weight.data.normal_(0.0, LM_HEAD_STD)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


BASE_MODEL_DIR = "base_model"  # RUN_DIR/base_model: the tiny base, built once per run


def _materialize(section: ModelSection, run_dir: Path) -> str:
    """Build the tiny base into RUN_DIR/base_model, so inference reloads exactly the trained-on weights."""
    target = Path(run_dir) / BASE_MODEL_DIR
    if not (target / "config.json").is_file():
        build_tiny(section.tiny, target)
    return str(target)


def _load(source: str, section: ModelSection, precision: str = "fp32"):
    from pefomed.models.hf import load_pretrained

    return load_pretrained(source, section, precision)  # an ordinary transformers LLaVA folder


TINY = register(ModelKind(name="tiny", check=lambda section: None, materialize=_materialize, load=_load,
                          keys={"tiny": (TinyConfig, Field(default_factory=TinyConfig,
                                                           description="sizes of the built-in tiny LLaVA (kind=tiny)"))},
                          describe=lambda section: f"the built-in tiny LLaVA of pefomed (model.tiny: "
                                                   f"{section.tiny.model_dump()})",
                          ships_base=True))
