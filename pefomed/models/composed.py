"""The PeFoMed / MiniGPT-v2 architecture assembled from two pretrained parts (model.kind: composed).

    image -> frozen vision encoder -> patch tokens (CLS dropped) -> k adjacent tokens concatenated
          -> trainable linear projection -> LLM input embeddings at the image placeholder

PeFoMed (arXiv 2401.02797) uses EVA-CLIP ViT-g/14 at 448 px: 1,024 patch tokens of width 1,408,
merged 4 at a time into 256 tokens of width 5,632, projected into Llama-2's 4,096. Here the
encoder is any transformers vision model that returns patch tokens and the LLM any
AutoModelForCausalLM, so the same code runs a tiny CLIP + tiny Llama in the tests.

The model's submodules are named `vision_tower`, `multi_modal_projector` and `language_model`
like LLaVA's, so pefomed.models.components, LoRA target resolution and `modules_to_save` treat it
like any other family. `ComposedProcessor` gives pefomed's collate the interface of a transformers
processor (chat template, placeholder expansion, save/load through AutoProcessor).
"""

from __future__ import annotations

import inspect
from typing import Optional

import torch
from pydantic import Field, model_validator
from torch import nn
from transformers import AutoConfig, AutoProcessor, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

try:
    from transformers.configuration_utils import SubConfigSpec
except ImportError:  # transformers < 5.2x (the GPU machines' 5.17): sub-configs built in __post_init__
    SubConfigSpec = None
from transformers.feature_extraction_utils import BatchFeature
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.processing_utils import ProcessorMixin
from transformers.tokenization_utils_base import AddedToken

from pefomed.errors import UserError
from pefomed.models.bundle import ModelBundle, attention_kwargs, is_partitioned, torch_dtype
from pefomed.models.kinds import ModelKind, register
from pefomed.recipe import MAX_IMAGE_SIDE, RecipeSection

MODEL_TYPE = "pefomed_composed"


class ComposedConfig(RecipeSection):
    """The PeFoMed / MiniGPT-v2 architecture assembled from parts (recipe section model.composed, kind=composed)."""

    vision_name_or_path: Optional[str] = Field(None, min_length=1,
                                               description="a transformers vision encoder (CLIP, SigLIP, EVA-style ViT)")
    llm_name_or_path: Optional[str] = Field(None, min_length=1, description="any transformers causal LM")
    # must divide the image's patch count (checked when the encoder is known); 4096 only stops a
    # typo (it is already a 64 x 64 grid merged into one token)
    merge_tokens: int = Field(4, gt=0, le=4096, description="adjacent visual tokens concatenated (4 in PeFoMed)")
    # no range here: negative indices count from the end, and the encoder's depth is known only
    # once it loads
    vision_feature_layer: Optional[int] = Field(
        None, description="hidden-state index to take patch tokens from; None = the encoder's final output "
                          "(for BLIP-2's EVA ViT-g that includes the final LayerNorm, MiniGPT-v2's ln_vision)")
    image_size: Optional[int] = Field(None, gt=0, le=MAX_IMAGE_SIDE,
                                      description="resize images to this square size (448 in PeFoMed); "
                                                  "None = the image processor's own size")
    image_token: str = Field("<ImageHere>", min_length=1, description="placeholder expanded into the image's tokens")
    image_prompt: str = Field("<Img><ImageHere></Img>", description="text put in the prompt for each image")
    prompt_template: str = Field("[INST] {content} [/INST]",
                                 description="one user turn; {content} = image prompts then the instruction")

    @model_validator(mode="after")
    def _placeholders_are_there(self):
        # the same rules the processor applies when it is built (pefomed.models.composed), checked
        # when the recipe loads instead of after the vision encoder and the LLM have loaded
        if self.image_token not in self.image_prompt:
            raise ValueError(f"model.composed.image_prompt {self.image_prompt!r} must contain "
                             f"model.composed.image_token {self.image_token!r}")
        if "{content}" not in self.prompt_template:
            raise ValueError(f"model.composed.prompt_template {self.prompt_template!r} must contain {{content}}")
        return self


def _as_pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def num_image_tokens(height: int, width: int, patch_size, merge_tokens: int) -> int:
    """LLM tokens one image becomes: its patch grid, merge_tokens patches per token."""
    ph, pw = _as_pair(patch_size)
    patches = (height // ph) * (width // pw)
    if patches % merge_tokens:
        raise UserError(f"an image of {height}x{width} px gives {patches} patches of {ph}x{pw}, "
                        f"not a multiple of model.composed.merge_tokens={merge_tokens}",
                        hint="choose model.composed.image_size so that the patch count divides by merge_tokens")
    return patches // merge_tokens


class ComposedVLMConfig(PreTrainedConfig):
    """Vision + text sub-configs plus the few numbers that join them."""

    model_type = MODEL_TYPE
    _SUB_DEFAULTS = {"vision_config": "clip_vision_model", "text_config": "llama"}
    if SubConfigSpec is not None:
        sub_configs_defaults = {name: SubConfigSpec(config_class=AutoConfig, model_type=model_type)
                                for name, model_type in _SUB_DEFAULTS.items()}
    else:
        sub_configs = {name: AutoConfig for name in _SUB_DEFAULTS}

        def __post_init__(self, **kwargs):
            # what transformers >= 5.2x does from sub_configs_defaults: a dict (as read back from
            # config.json) or nothing becomes the sub-model's config class
            for name, default in self._SUB_DEFAULTS.items():
                value = getattr(self, name)
                if isinstance(value, dict):
                    value = {**value, "model_type": value.get("model_type", default)}
                    setattr(self, name, CONFIG_MAPPING[value["model_type"]](**value))
                elif value is None:
                    setattr(self, name, CONFIG_MAPPING[default]())
            super().__post_init__(**kwargs)

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    merge_tokens: int = 4
    image_token_id: int = 0
    vision_feature_layer: int | None = None
    tie_word_embeddings: bool = False


class ComposedForConditionalGeneration(PreTrainedModel, GenerationMixin):
    """Frozen vision encoder + token merge + linear projector + causal LM."""

    config_class = ComposedVLMConfig
    base_model_prefix = ""
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    # Attention kernels are chosen by each part when it is loaded; the wrapper adds none of its own.
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: ComposedVLMConfig, vision_tower: PreTrainedModel | None = None,
                 language_model: PreTrainedModel | None = None):
        super().__init__(config)
        from transformers import AutoModel, AutoModelForCausalLM

        self.vision_tower = vision_tower if vision_tower is not None else AutoModel.from_config(config.vision_config)
        self.language_model = (language_model if language_model is not None
                               else AutoModelForCausalLM.from_config(config.text_config))
        # Pretrained parts must not be re-initialised by post_init: transformers skips modules
        # flagged as initialised.
        for part in (vision_tower, language_model):
            if part is not None:
                for module in part.modules():
                    module._is_hf_initialized = True
        dtype = next(self.language_model.parameters()).dtype
        self.multi_modal_projector = nn.Linear(config.vision_config.hidden_size * config.merge_tokens,
                                               config.text_config.hidden_size, dtype=dtype)
        self._vision_accepts = set(inspect.signature(self.vision_tower.forward).parameters)
        self.post_init()
        self.generation_config = self.language_model.generation_config

    def _init_weights(self, module):
        # Only the projector belongs to the wrapper itself; nn.Linear's default init is what
        # MiniGPT-v2 uses for its llama_proj.
        if module is getattr(self, "multi_modal_projector", None):
            module.reset_parameters()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.language_model.set_output_embeddings(value)

    # Set by pefomed.models.feature_cache while training from cached encoder outputs
    # (train.feature_cache): a callable (pixel_values, encode) -> patch tokens. None: the encoder runs.
    patch_token_source = None

    def image_patch_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(images, 3, H, W) -> (images, patches, vision hidden): the encoder's selected layer with
        its CLS/register tokens dropped, before the merge and the projector (nothing trainable yet),
        so this is what the frozen-feature cache keeps per image."""
        if self.patch_token_source is not None:
            return self.patch_token_source(pixel_values, self._encode_patch_tokens)
        return self._encode_patch_tokens(pixel_values)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(images, 3, H, W) -> (images, patches / k, LLM hidden)."""
        features = self.image_patch_tokens(pixel_values)
        k = self.config.merge_tokens
        b, n, d = features.shape
        if n % k:
            raise ValueError(f"{n} patch tokens are not a multiple of merge_tokens={k}")
        # Row-major neighbours concatenated along channels, exactly MiniGPT-v2's view(bs, n/4, 4d).
        merged = features.reshape(b, n // k, d * k)
        proj_dtype = self.multi_modal_projector.weight.dtype
        return self.multi_modal_projector(merged.to(proj_dtype))

    def _encode_patch_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vision_config = self.config.vision_config
        height, width = pixel_values.shape[-2:]
        kwargs = {}
        # EVA ViT-g was trained at 224 px and PeFoMed runs it at 448: interpolate the position
        # embeddings when the image is not the encoder's native size and the encoder can.
        native = getattr(vision_config, "image_size", None)
        if native is not None and _as_pair(native) != (height, width) and "interpolate_pos_encoding" in self._vision_accepts:
            kwargs["interpolate_pos_encoding"] = True
        layer = self.config.vision_feature_layer
        dtype = next(self.vision_tower.parameters()).dtype
        out = self.vision_tower(pixel_values=pixel_values.to(dtype), output_hidden_states=layer is not None,
                                return_dict=True, **kwargs)
        features = out.last_hidden_state if layer is None else out.hidden_states[layer]
        ph, pw = _as_pair(vision_config.patch_size)
        patches = (height // ph) * (width // pw)
        extra = features.shape[1] - patches
        if extra < 0:
            raise ValueError(f"the vision encoder returned {features.shape[1]} tokens for {patches} patches")
        # CLS (and register) tokens come before the patch grid in CLIP, EVA/BLIP-2 and DINOv2;
        # SigLIP has none. They carry no spatial position, so they are dropped as in MiniGPT-v2.
        # Contiguous, like a tensor read back from the feature cache: the projector's matmul then
        # takes the same kernel path (and gives the same bits) whether the features were cached or not.
        return features[:, extra:].contiguous()

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                position_ids: torch.LongTensor | None = None, past_key_values=None,
                inputs_embeds: torch.Tensor | None = None, use_cache: bool | None = None,
                logits_to_keep: int | torch.Tensor = 0, **kwargs) -> CausalLMOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            image_mask = input_ids == self.config.image_token_id
            # The image token may lie outside the LLM's vocabulary (it was added to the tokenizer
            # only); its positions are overwritten below, so look up a harmless id there.
            inputs_embeds = self.get_input_embeddings()(input_ids.masked_fill(image_mask, 0))
            if pixel_values is not None:
                features = self.get_image_features(pixel_values)
                if int(image_mask.sum()) != features.shape[0] * features.shape[1]:
                    raise ValueError(f"{int(image_mask.sum())} image tokens in the text but {features.shape[0]} "
                                     f"image(s) of {features.shape[1]} tokens")
                inputs_embeds = inputs_embeds.masked_scatter(image_mask.unsqueeze(-1),
                                                             features.to(inputs_embeds.dtype))
            elif image_mask.any() and (past_key_values is None or past_key_values.get_seq_length() == 0):
                raise ValueError("the text has image tokens but no pixel_values were given")
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   position_ids=position_ids, past_key_values=past_key_values, labels=labels,
                                   use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs)


class ComposedProcessor(ProcessorMixin):
    """Image processor of the vision encoder + tokenizer of the LLM, with MiniGPT-v2's prompt format.

    `apply_chat_template` renders a conversation with `prompt_template` ("[INST] {content} [/INST]"),
    one `image_prompt` ("<Img><ImageHere></Img>") per image; `__call__` expands each `image_token`
    into as many copies as the image has LLM tokens, so the model can place the projected image
    features there.
    """

    def __init__(self, image_processor=None, tokenizer=None, image_token: str = "<ImageHere>",
                 image_prompt: str = "<Img><ImageHere></Img>", prompt_template: str = "[INST] {content} [/INST]",
                 patch_size=14, merge_tokens: int = 4, chat_template=None, **kwargs):
        self.image_token = image_token
        self.image_prompt = image_prompt
        self.prompt_template = prompt_template
        self.patch_size = patch_size
        self.merge_tokens = merge_tokens
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

    def apply_chat_template(self, conversation, add_generation_prompt: bool = True, tokenize: bool = False, **kwargs):
        if tokenize:
            raise ValueError("ComposedProcessor.apply_chat_template renders text only; "
                             "call the processor with text= and images= to tokenize")
        if conversation and isinstance(conversation[0], list):  # a batch of conversations
            return [self.apply_chat_template(c, add_generation_prompt, tokenize, **kwargs) for c in conversation]
        rendered = []
        for message in conversation:
            content = message["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            n_images = sum(part.get("type") == "image" for part in content)
            text = " ".join(part["text"] for part in content if part.get("type") == "text")
            if message["role"] in ("user", "system"):
                body = " ".join([self.image_prompt] * n_images + ([text] if text else []))
                rendered.append(self.prompt_template.replace("{content}", body))
            elif message["role"] == "assistant":
                rendered.append(" " + text)
            else:
                raise ValueError(f"unknown chat role {message['role']!r}")
        # The template's closing marker ([/INST]) is already the generation prompt.
        return "".join(rendered)

    def __call__(self, images=None, text=None, return_tensors=None, **kwargs) -> BatchFeature:
        if text is None:
            raise ValueError("ComposedProcessor needs text (with one image placeholder per image)")
        texts = [text] if isinstance(text, str) else list(text)
        if images is None:
            flat = []
        elif isinstance(images, (list, tuple)):
            flat = [im for item in images for im in (item if isinstance(item, (list, tuple)) else [item])]
        else:
            flat = [images]
        placeholders = sum(t.count(self.image_token) for t in texts)
        if placeholders != len(flat):
            raise ValueError(f"{placeholders} '{self.image_token}' placeholder(s) in the text but {len(flat)} image(s)")
        data = {}
        if flat:
            pixel_values = self.image_processor(images=flat, return_tensors="pt")["pixel_values"]
            n = num_image_tokens(*pixel_values.shape[-2:], self.patch_size, self.merge_tokens)
            texts = [t.replace(self.image_token, self.image_token * n) for t in texts]
            data["pixel_values"] = pixel_values
        encoded = self.tokenizer(texts, return_tensors=return_tensors, **kwargs)
        return BatchFeature({**encoded, **data}, tensor_type=return_tensors)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)


# Registered so that AutoProcessor.from_pretrained(RUN_DIR/processor) finds the class by the
# name saved in processor_config.json (pefomed.models.run_dir.load_run), with no change to load_run.
try:
    AutoConfig.register(MODEL_TYPE, ComposedVLMConfig)
    AutoProcessor.register(ComposedVLMConfig, ComposedProcessor)
except ValueError:  # already registered (module reloaded)
    pass


def _load_vision(path: str, dtype, attention: dict | None = None):
    """The vision encoder alone, from a vision-only or a full (CLIP, SigLIP, BLIP-2) checkpoint."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    config = AutoConfig.from_pretrained(path)
    vision_config = getattr(config, "vision_config", None) or config
    try:
        cls = MODEL_MAPPING[type(vision_config)]
    except KeyError:
        # BLIP-2's EVA ViT-g (Blip2VisionConfig) has no AutoModel entry; its class follows the
        # library's naming (Blip2VisionConfig -> Blip2VisionModel).
        cls = getattr(transformers, type(vision_config).__name__.replace("Config", "Model"), None)
        if cls is None:
            raise UserError(f"model.composed.vision_name_or_path {path!r}: no transformers vision model for "
                            f"{type(vision_config).__name__}") from None
    model, info = cls.from_pretrained(path, dtype=dtype, output_loading_info=True, **(attention or {}))
    if info["missing_keys"]:
        # CLIP/SigLIP vision classes know the prefix of their full checkpoints; BLIP-2's does
        # not, so its weights ("vision_model.*") are read from the checkpoint directly.
        _load_prefixed_weights(model, path, dtype)
    return model


def _load_prefixed_weights(model, path: str, dtype) -> None:
    """The vision encoder's tensors of a full checkpoint ("vision_model.*" of BLIP-2), read one at a
    time from the safetensors files (never the whole checkpoint: a BLIP-2 file also holds its LLM)
    and cast to `dtype` one by one. Under ZeRO-3 (pefomed.models.loader.zero3_partitioned) each
    module's parameters are gathered while they are written, then partitioned again."""
    import contextlib
    import json

    from safetensors import safe_open
    from transformers.utils import cached_file

    index = cached_file(path, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False)
    if index is not None:
        files = sorted(set(json.loads(open(index, encoding="utf-8").read())["weight_map"].values()))
        files = [cached_file(path, name) for name in files]
    else:
        files = [cached_file(path, "model.safetensors")]
    own = [name for name, _ in model.named_parameters()] + [name for name, _ in model.named_buffers()]
    anchor = own[0]
    where: dict[str, tuple[str, str]] = {}  # our name -> (file, checkpoint name)
    prefix = None
    for file in files:
        with safe_open(file, framework="pt") as handle:
            keys = list(handle.keys())
        if prefix is None:
            prefix = next((k[: -len(anchor)] for k in keys if k.endswith("." + anchor)), None)
        if prefix is not None:
            where.update({k[len(prefix):]: (file, k) for k in keys if k.startswith(prefix)})
    if prefix is None:
        raise UserError(f"model.composed.vision_name_or_path {path!r}: no weights of the vision encoder found")
    missing = sorted(set(dict(model.named_parameters())) - set(where))
    if missing:
        raise UserError(f"model.composed.vision_name_or_path {path!r}: the checkpoint lacks {missing[:5]}")

    with contextlib.ExitStack() as stack:
        handles = {file: stack.enter_context(safe_open(file, framework="pt")) for file in files}
        _copy_into(model, lambda name: handles[where[name][0]].get_tensor(where[name][1]), set(where), dtype)


def _copy_into(model, read, available: set, dtype) -> None:
    """Each module's tensors from `read(name)`, module by module (gathered first under ZeRO-3)."""
    import contextlib

    for module_name, module in model.named_modules():
        params = dict(module.named_parameters(recurse=False))
        buffers = {n: b for n, b in module.named_buffers(recurse=False) if b is not None}
        prefix_here = f"{module_name}." if module_name else ""
        gather = contextlib.nullcontext()
        if any(is_partitioned(p) for p in params.values()):
            import deepspeed

            gather = deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=0)
        with gather, torch.no_grad():
            for name, param in params.items():
                param.copy_(read(prefix_here + name).to(dtype))
            for name, buffer in buffers.items():
                if prefix_here + name in available:
                    # buffers keep their own dtype (position ids are integers)
                    buffer.copy_(read(prefix_here + name).to(buffer.dtype))


def _load_image_processor(path: str, image_size: int | None):
    from transformers import AutoImageProcessor

    image_processor = AutoImageProcessor.from_pretrained(path)
    if image_size is not None:
        size = dict(image_processor.size or {})
        if "shortest_edge" in size:
            size = {"shortest_edge": image_size}
        else:
            size = {"height": image_size, "width": image_size}
        image_processor.size = size
        if getattr(image_processor, "crop_size", None) is not None:
            image_processor.crop_size = {"height": image_size, "width": image_size}
    return image_processor


def build_processor(section, tokenizer, image_processor, patch_size) -> ComposedProcessor:
    cfg = section.composed
    if cfg.image_token not in cfg.image_prompt:
        raise UserError(f"model.composed.image_prompt {cfg.image_prompt!r} must contain "
                        f"model.composed.image_token {cfg.image_token!r}")
    if "{content}" not in cfg.prompt_template:
        raise UserError(f"model.composed.prompt_template {cfg.prompt_template!r} must contain {{content}}")
    if cfg.image_token not in tokenizer.get_vocab():
        # One atomic token per image position; never split or normalised by the tokenizer.
        tokenizer.add_tokens([AddedToken(cfg.image_token, special=True, normalized=False)], special_tokens=True)
    return ComposedProcessor(image_processor=image_processor, tokenizer=tokenizer, image_token=cfg.image_token,
                             image_prompt=cfg.image_prompt, prompt_template=cfg.prompt_template,
                             patch_size=patch_size, merge_tokens=cfg.merge_tokens)


def load_composed(section, precision: str = "fp32"):
    """Assemble the composed model and its processor from model.composed.* (see pefomed.recipe)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer


    cfg = section.composed
    if not cfg.vision_name_or_path or not cfg.llm_name_or_path:
        raise UserError("model.kind 'composed' needs model.composed.vision_name_or_path and "
                        "model.composed.llm_name_or_path")
    dtype = torch_dtype(precision)
    attention = attention_kwargs(section)  # model.attn_implementation, for both parts
    # The parts' loads must not move the RNG the projector's init draws from below: under ZeRO-3
    # transformers initialises the empty partitions before it copies the checkpoint in, and the
    # projector must start the same whether the parts loaded whole or partitioned.
    rng = torch.random.get_rng_state()
    try:
        vision = _load_vision(cfg.vision_name_or_path, dtype, attention)
        image_processor = _load_image_processor(cfg.vision_name_or_path, cfg.image_size)
    except OSError as err:
        raise UserError(f"model.composed.vision_name_or_path {cfg.vision_name_or_path!r} could not be loaded: {err}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.llm_name_or_path, trust_remote_code=section.trust_remote_code)
        llm = AutoModelForCausalLM.from_pretrained(cfg.llm_name_or_path, dtype=dtype,
                                                   trust_remote_code=section.trust_remote_code, **attention)
    except OSError as err:
        raise UserError(f"model.composed.llm_name_or_path {cfg.llm_name_or_path!r} could not be loaded: {err}") from None
    torch.random.set_rng_state(rng)
    processor = build_processor(section, tokenizer, image_processor, vision.config.patch_size)
    attn = {"vision": vision.config._attn_implementation, "llm": llm.config._attn_implementation}
    config = ComposedVLMConfig(vision_config=vision.config, text_config=llm.config, merge_tokens=cfg.merge_tokens,
                               image_token_id=processor.image_token_id, vision_feature_layer=cfg.vision_feature_layer)
    # The projector starts random; training learns it and inference restores it from the adapter
    # (peft modules_to_save), so its init need not be reproducible here.
    model = ComposedForConditionalGeneration(config, vision_tower=vision, language_model=llm)
    # The wrapper's config sets its attention implementation on its sub-configs, which are the
    # parts' own config objects; left unset (None) there, Llama's attention runs without its causal
    # mask and training sees the answer it must predict. Give each part back the kernel it loaded with.
    model.vision_tower.config._attn_implementation = attn["vision"] or "eager"
    model.language_model.config._attn_implementation = attn["llm"] or "eager"
    if section.freeze_vision:
        model.vision_tower.requires_grad_(False)
    model.generation_config.pad_token_id = (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                            else tokenizer.eos_token_id)
    source = f"composed: {cfg.vision_name_or_path} + {cfg.llm_name_or_path}"
    return ModelBundle(model=model, processor=processor, source=source)


def _check(section) -> None:
    from pefomed.models.hf import check_path

    paths = {"model.composed.vision_name_or_path": section.composed.vision_name_or_path,
             "model.composed.llm_name_or_path": section.composed.llm_name_or_path}
    missing = [key for key, value in paths.items() if not value]
    if missing:
        raise UserError(f"model.kind 'composed' needs {' and '.join(missing)}")
    for key, value in paths.items():
        check_path(key, value)


COMPOSED = register(ModelKind(
    name="composed", check=_check,
    keys={"composed": (ComposedConfig, Field(default_factory=ComposedConfig, description="the vision encoder and "
                                                                                         "LLM to assemble, and how "
                                                                                         "(kind=composed)"))},
    materialize=lambda section, run_dir: "composed",  # assembled from model.composed.* at load time
    load=lambda source, section, precision="fp32": load_composed(section, precision),
    describe=lambda section: (f"pefomed's composed model: vision {section.composed.vision_name_or_path!r} + "
                              f"LLM {section.composed.llm_name_or_path!r} "
                              f"(merge_tokens={section.composed.merge_tokens})")))
