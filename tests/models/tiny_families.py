"""Tiny checkpoints of real vision-language families, built in code (no hub, no downloads).

Each builder writes an ordinary transformers folder (config + random weights + processor) that
AutoModelForImageTextToText / AutoProcessor load like the real checkpoint: the family's own
processor class, image processor, image-token expansion and a chat template written in the
style of the real one, over a byte-level BPE tokenizer trained offline on the package corpus
with the special tokens that family needs. Sizes are the smallest that keep each family's
geometry valid (image 32-64 px, one or two layers, hidden 32-64), so a CPU trains in seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pefomed.models.tiny import corpus_lines

VOCAB = 400


def train_tokenizer(specials: list[str], *, eos: str, pad: str, bos: str | None = None, unk: str | None = None,
                    extra: dict[str, str] | None = None):
    """A byte-level BPE over the bundled corpus with `specials` as whole tokens (never split)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_lines(), trainer)
    named = {"eos_token": eos, "pad_token": pad}
    if bos:
        named["bos_token"] = bos
    if unk:
        named["unk_token"] = unk
    return PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=extra or {}, **named)


def _save(model, processor, out: Path, tokenizer) -> Path:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _seeded(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


# ---------------------------------------------------------------- LLaVA-Med (LLaVA-1.5 on Mistral)

LLAVA_MED_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}[INST] {% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}{% endif %}{% endfor %} [/INST]"
    "{% else %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)


def build_llava(out: Path) -> Path:
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, MistralConfig)

    tokenizer = train_tokenizer(["<unk>", "<s>", "</s>", "<image>", "<pad>"], bos="<s>", eos="</s>", pad="<pad>",
                                unk="<unk>", extra={"image_token": "<image>"})
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_MED_TEMPLATE)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32),
        text_config=MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                  head_dim=16, pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default")
    model = _seeded(lambda: LlavaForConditionalGeneration(config))
    return _save(model, processor, out, tokenizer)


# ---------------------------------------------------------------- Qwen2-VL / Qwen2.5-VL

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _qwen_processor(processor_cls):
    from transformers import Qwen2VLImageProcessor

    tokenizer = train_tokenizer(QWEN_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>",
                                extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                       "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"})
    # 4 px patches merged 2x2: a 32 px image is an 8x8 patch grid, 16 image tokens
    image_processor = Qwen2VLImageProcessor(patch_size=4, merge_size=2, temporal_patch_size=2,
                                            size={"shortest_edge": 16 * 16, "longest_edge": 32 * 32})
    kwargs = {}
    if processor_cls.__name__ == "Qwen2VLProcessor" or "video_processor" in processor_cls.__init__.__code__.co_varnames:
        from transformers import Qwen2VLVideoProcessor

        kwargs["video_processor"] = Qwen2VLVideoProcessor(patch_size=4, merge_size=2, temporal_patch_size=2)
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_TEMPLATE,
                              **kwargs)
    return tokenizer, processor


def _qwen_ids(tokenizer) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    return dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))


def _qwen_text(tokenizer) -> dict:
    # head_dim 16: the three M-RoPE sections (time, height, width) share its 8 frequencies
    return dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)


def build_qwen2_vl(out: Path) -> Path:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tokenizer, processor = _qwen_processor(Qwen2VLProcessor)
    config = Qwen2VLConfig(
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2),
        text_config=_qwen_text(tokenizer), **_qwen_ids(tokenizer))
    model = _seeded(lambda: Qwen2VLForConditionalGeneration(config))
    return _save(model, processor, out, tokenizer)


def build_qwen2_5_vl(out: Path) -> Path:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    tokenizer, processor = _qwen_processor(Qwen2_5_VLProcessor)
    config = Qwen2_5_VLConfig(
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                           fullatt_block_indexes=[1]),
        text_config=_qwen_text(tokenizer), **_qwen_ids(tokenizer))
    model = _seeded(lambda: Qwen2_5_VLForConditionalGeneration(config))
    return _save(model, processor, out, tokenizer)


# ---------------------------------------------------------------- Gemma 3 (MedGemma)

GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>{% else %}{{ part['text'] | trim }}{% endif %}"
    "{% endfor %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build_gemma3(out: Path) -> Path:
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor,
                              Gemma3Processor, Gemma3TextConfig, SiglipVisionConfig)

    tokenizer = train_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                                 "<start_of_image>", "<end_of_image>", "<image_soft_token>"],
                                bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>",
                                extra={"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                                       "eoi_token": "<end_of_image>"})
    image_processor = Gemma3ImageProcessor(size={"height": 32, "width": 32})
    # 32 px / 8 px patches = 4x4 patches, average-pooled to 2x2 = 4 soft tokens per image
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4,
                                chat_template=GEMMA3_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma3Config(
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=32, patch_size=8, vision_use_head=False),
        text_config=Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                     head_dim=16, query_pre_attn_scalar=16, sliding_window=64,
                                     max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        mm_tokens_per_image=4, boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"))
    model = _seeded(lambda: Gemma3ForConditionalGeneration(config))
    return _save(model, processor, out, tokenizer)


# ---------------------------------------------------------------- Idefics3 / SmolVLM

IDEFICS3_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
# the row/column tags of a split image are single tokens in the real vocabulary too
ROW_COL = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]


def _idefics3_parts():
    tokenizer = train_tokenizer(["<|begin_of_text|>", "<|end_of_text|>", "<end_of_utterance>", "<image>",
                                 "<fake_token_around_image>", "<global-img>", *ROW_COL],
                                bos="<|begin_of_text|>", eos="<end_of_utterance>", pad="<|end_of_text|>",
                                extra={"image_token": "<image>"})
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=2048,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=8)
    return tokenizer, text, vision


def build_idefics3(out: Path) -> Path:
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor,
                              Idefics3Processor)

    tokenizer, text, vision = _idefics3_parts()
    # images are resized to 64 px and split into 2x2 crops of 32 px plus the whole image:
    # 5 sub-images of (32/8)^2 / 2^2 = 4 tokens each
    image_processor = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                             do_image_splitting=True)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=IDEFICS3_TEMPLATE)
    config = Idefics3Config(vision_config=vision, text_config={"model_type": "llama", **text}, scale_factor=2,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    model = _seeded(lambda: Idefics3ForConditionalGeneration(config))
    return _save(model, processor, out, tokenizer)


def build_smolvlm(out: Path) -> Path:
    from transformers import (SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessor,
                              SmolVLMProcessor, SmolVLMVideoProcessor)

    tokenizer, text, vision = _idefics3_parts()
    image_processor = SmolVLMImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                            do_image_splitting=True)
    video_processor = SmolVLMVideoProcessor(size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    processor = SmolVLMProcessor(image_processor=image_processor, video_processor=video_processor,
                                 tokenizer=tokenizer, image_seq_len=4, chat_template=IDEFICS3_TEMPLATE)
    config = SmolVLMConfig(vision_config=vision, text_config={"model_type": "llama", **text}, scale_factor=2,
                           image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    model = _seeded(lambda: SmolVLMForConditionalGeneration(config))
    return _save(model, processor, out, tokenizer)


# ---------------------------------------------------------------- PaliGemma

# PaliGemma has no chat turns: the prompt is "<image>... <bos>prefix\n" (the processor inserts
# <bos> after the image tokens and the newline) and the answer follows as the suffix.
PALIGEMMA_TEMPLATE = (
    "{% for message in messages %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endfor %}"
)


def build_paligemma(out: Path) -> Path:
    from transformers import (GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration,
                              PaliGemmaProcessor, SiglipImageProcessor, SiglipVisionConfig)

    tokenizer = train_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], bos="<bos>", eos="<eos>",
                                pad="<pad>", unk="<unk>", extra={"image_token": "<image>"})
    image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16  # (32 px / 8 px patches)^2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                   chat_template=PALIGEMMA_TEMPLATE)
    vocab = len(tokenizer)  # after the processor added its <locXXXX>/<segXXX> tokens
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=32, patch_size=8,
                                         projection_dim=32, vision_use_head=False),
        text_config=GemmaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vocab_size=vocab, projection_dim=32,
        hidden_size=32)
    model = _seeded(lambda: PaliGemmaForConditionalGeneration(config))
    return _save(model, processor, out, tokenizer)


BUILDERS = {
    "llava": build_llava,
    "qwen2_vl": build_qwen2_vl,
    "qwen2_5_vl": build_qwen2_5_vl,
    "gemma3": build_gemma3,
    "idefics3": build_idefics3,
    "smolvlm": build_smolvlm,
    "paligemma": build_paligemma,
}
