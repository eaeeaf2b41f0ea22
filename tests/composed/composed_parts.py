"""Tiny pretrained-style parts for the composed model, built in code and saved like hub folders:
a CLIP vision encoder (saved as a full CLIPModel, as hub CLIP checkpoints are) with its image
processor, and a Llama causal LM with a byte-level BPE tokenizer trained offline."""

from __future__ import annotations

from pathlib import Path

IMAGE_SIZE = 32
PATCH_SIZE = 4  # 8 x 8 = 64 patches + CLS: small patches keep the bright spot inside whole patches
VISION_HIDDEN = 64
TEXT_HIDDEN = 64
# A Llama-2 chat style prompt; the tiny tokenizer never saw "[INST]" but byte-level BPE spells anything.
PROMPT_TEMPLATE = "[INST] {content} [/INST]"


def build_vision(out: Path, seed: int = 0, full_clip: bool = True) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionConfig, CLIPVisionModel

    vision = dict(hidden_size=VISION_HIDDEN, intermediate_size=VISION_HIDDEN * 2, num_hidden_layers=2,
                  num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=VISION_HIDDEN)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if full_clip:
            text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                        vocab_size=100, projection_dim=VISION_HIDDEN, bos_token_id=0, eos_token_id=1, pad_token_id=2)
            model = CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=VISION_HIDDEN))
        else:
            model = CLIPVisionModel(CLIPVisionConfig(**vision))
    model.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                       crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(out)
    return out


def build_llm(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pefomed.models.tiny import LM_HEAD_STD, train_tokenizer

    tokenizer = train_tokenizer(512)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=TEXT_HIDDEN * 3,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        # As in pefomed.models.tiny: a random head at 0.02 std cannot answer confidently through
        # a frozen final norm; a pretrained LLM's head has useful scale, this gives the tiny one that.
        model.lm_head.weight.data.normal_(0.0, LM_HEAD_STD)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_parts(root: Path) -> tuple[Path, Path]:
    return build_vision(root / "vision"), build_llm(root / "llm")


def composed_overrides(vision: Path, llm: Path, merge: int = 4) -> list[str]:
    return ["model.kind=composed", f"model.composed.vision_name_or_path={vision}",
            f"model.composed.llm_name_or_path={llm}", f"model.composed.merge_tokens={merge}",
            f"model.composed.prompt_template='{PROMPT_TEMPLATE}'"]
