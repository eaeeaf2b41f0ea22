"""The frozen vision-feature cache (`train.feature_cache`): run the frozen vision tower once per
image, keep its output under RUN_DIR/feature_cache, and feed later epochs from there.

With the vision encoder frozen and the images not augmented, an image gives the same encoder
output every epoch; only what comes after it (the token merge, the trainable projector, the LLM)
changes. So the encoder's output is cached at the last point before anything trainable:

- `model.kind: composed`: the selected layer's patch tokens, CLS/register tokens dropped, before
  the token merge and the projector (`ComposedForConditionalGeneration.image_patch_tokens`);
- the LLaVA family (`model.kind: tiny`, and `hf` checkpoints of `LlavaForConditionalGeneration`):
  the vision tower's hidden state(s) at `vision_feature_layer`, exactly what transformers'
  `LlavaModel.get_image_features` asks the tower for (it calls the tower with
  `output_hidden_states=vision_feature_layer` and reads `hidden_states[layer]`), before the
  CLS crop of `vision_feature_select_strategy` and `multi_modal_projector`.

Keys. Each micro-batch carries one key per image (`pefomed.data.train_batches.ImageKeyed`, in the
DataLoader workers, which also read ahead what is stored for them): the sha256 of the exact pixel
tensor the tower receives (shape, dtype, bytes), so the image file, the processor's resize, crop
and normalisation and the transform are all in it without a separate fingerprint. The folder is
`RUN_DIR/feature_cache/<fingerprint>/`, the fingerprint a sha256 of the family, the tower's class,
config, attention kernel, dtype, feature layer, and every tensor of its weights: another tower
(or a stage-1 run's weights through `train.init_from`) gets another folder.

Fill on miss, read on hit. A micro-batch whose images are all stored skips the tower; otherwise
the tower runs on the whole micro-batch and the missing images are stored (safetensors, in the
tower's own dtype, so a cached feature is bit-for-bit the computed one). An image already stored
always takes its stored value, so once stored an image's features never change: a resumed run,
which finds what the interrupted attempt stored after its last checkpoint, equals an
uninterrupted one bit for bit. Writes are atomic (a temporary file, then a rename): several
processes may store the same key (the same content), and no reader ever sees half a file; an
unreadable entry counts as a miss and is rewritten. Under ZeRO-3 with several processes the
frozen tower's parameters are gathered by collective calls, so the processes agree per
micro-batch (one all-reduce) whether the tower runs.

Evaluation and generation never set keys, so they always run the tower.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from pefomed.errors import UserError
from pefomed.models import run_dir as run_dir_layout
from pefomed.models.bundle import innermost

SUPPORTED = ("composed (model.kind: composed, any vision encoder)",
             "llava (model.kind: tiny, or model.kind: hf with a LlavaForConditionalGeneration checkpoint)")
SUMMARY_JSON = "summary.json"  # RUN_DIR/feature_cache/summary.json: what the last run read and stored


def _unsupported(family: str) -> UserError:
    return UserError(f"train.feature_cache: the {family} family's vision path is not supported by the feature "
                     f"cache (supported: {'; '.join(SUPPORTED)})", hint="set train.feature_cache=false")


def check_recipe(recipe) -> None:
    """Refuse, before any model is loaded, a recipe where cached features would be wrong: the
    tower trains (its output changes every step), or the images are augmented (every epoch sees
    new pixels), or the family's vision path is not one this cache knows."""
    if not recipe.train.feature_cache:
        return
    method = recipe.method
    if method.vision_lora:
        raise UserError("train.feature_cache needs a frozen vision tower, but method.vision_lora=true trains LoRA "
                        "on it (its output changes every step)", hint="set train.feature_cache=false or "
                                                                        "method.vision_lora=false")
    if method.name == "full" and "vision" in method.full_parts:
        raise UserError("train.feature_cache needs a frozen vision tower, but method.name=full trains it "
                        "(vision is in method.full_parts)", hint="set train.feature_cache=false or drop vision "
                                                                   "from method.full_parts")
    if not recipe.model.freeze_vision:
        raise UserError("train.feature_cache needs a frozen vision tower, but model.freeze_vision is false",
                        hint="set train.feature_cache=false")
    if recipe.data.train_transform != "resize":
        raise UserError(f"train.feature_cache cannot be used with data.train_transform="
                        f"{recipe.data.train_transform}: a random augmentation gives the tower new pixels every "
                        f"epoch, so no image's output can be reused", hint="set train.feature_cache=false or "
                                                                            "data.train_transform=resize")
    if recipe.model.kind == "hf" and recipe.model.name_or_path:
        model_type = _hf_model_type(recipe.model.name_or_path)
        if model_type is not None and model_type != "llava":
            raise _unsupported(model_type)


def _hf_model_type(path: str) -> str | None:
    """config.json's model_type, read without any model code; None when it cannot be read here
    (checked again on the loaded model)."""
    from transformers import PreTrainedConfig

    try:
        config, _ = PreTrainedConfig.get_config_dict(path)
    except (OSError, ValueError):
        return None
    return config.get("model_type")


def _family(inner) -> tuple[str, torch.nn.Module]:
    """(family, vision tower) of a loaded model, or a UserError naming its family."""
    from transformers import LlavaForConditionalGeneration

    from pefomed.models.composed import ComposedForConditionalGeneration

    if isinstance(inner, ComposedForConditionalGeneration):
        return "composed", inner.vision_tower
    if type(inner) is LlavaForConditionalGeneration:
        tower = inner.model.vision_tower
        if getattr(tower.config, "model_type", None) == "pixtral":
            # Pixtral towers take variable image sizes (image_sizes) and return one sequence for all
            raise _unsupported("llava (with a pixtral vision tower)")
        return "llava", tower
    config = getattr(inner, "config", None)
    raise _unsupported(getattr(config, "model_type", None) or type(inner).__name__)


def _tensor_bytes(tensor: torch.Tensor):
    tensor = tensor.detach().to("cpu").contiguous()
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


DIGEST_KEY = "pefomed.blake2b"  # safetensors metadata: content_digest of the entry's tensors


def content_digest(tensors: dict[str, torch.Tensor]) -> str:
    """blake2b of an entry's tensors (names, dtypes, shapes, bytes), stored with it and checked
    on every read. Not a secret: it catches an entry changed after it was stored (by hand, a tool,
    a disk), not someone who recomputes it; blake2b is the cheapest strong hash in hashlib."""
    digest = hashlib.blake2b(digest_size=32)
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def fingerprint(family: str, tower, layers, attn_implementation: str) -> str:
    """sha256 of what decides the tower's output for given pixels: its family and class, config,
    kernel, dtype, selected layer(s), and every parameter and buffer (gathered one by one when
    ZeRO-3 loaded them partitioned)."""
    digest = hashlib.sha256()
    config = tower.config.to_dict() if hasattr(tower.config, "to_dict") else dict(vars(tower.config))
    head = {"family": family, "class": type(tower).__name__, "config": config, "layers": layers,
            "attn_implementation": attn_implementation, "dtype": str(next(tower.parameters()).dtype)}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    for name, tensor in [*tower.named_parameters(), *tower.named_buffers()]:
        if hasattr(tensor, "ds_numel"):  # a ZeRO-3 partition: gather the whole tensor (a collective)
            import deepspeed

            with deepspeed.zero.GatheredParameters([tensor], modifier_rank=None):
                full = tensor.data.detach().to("cpu").clone()
        else:
            full = tensor
        digest.update(f"{name}|{full.dtype}|{tuple(full.shape)}|".encode())
        digest.update(_tensor_bytes(full))
    return digest.hexdigest()


class FeatureCache:
    """Serves a vision tower's output from RUN_DIR/feature_cache while training.

    `prepare(keys)` before a training forward (the micro-batch's image keys, in pixel_values
    order), the forward, then `done()`; without keys the tower runs as usual."""

    def __init__(self, root: Path, family: str, sync_device=None):
        self.root, self.family, self.sync_device = Path(root), family, sync_device
        self.hits = self.misses = 0  # images since the last `take_counts`
        self.total_hits = self.total_misses = 0
        self._keys: list[str] | None = None
        self._stored: list[dict | None] = []
        self._force = False
        self.distrusted = 0  # entries that failed their check (unreadable, digest, layout) in this process
        self._layout: dict | None = None  # {name: (per-image shape, dtype)} of the tower's output, once seen
        self._uninstall = lambda: None

    # ----------------------------------------------------------------- storage

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def read(self, key: str) -> dict | None:
        """The stored tensors of `key`, or None (not stored yet, unreadable, or not matching the
        content digest it was stored with: computed and stored again, never used)."""
        from safetensors import SafetensorError, safe_open

        path = self.path(key)
        try:
            with safe_open(str(path), framework="pt") as handle:
                recorded = (handle.metadata() or {}).get(DIGEST_KEY)
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except FileNotFoundError:
            return None
        except (SafetensorError, OSError, ValueError, RuntimeError):
            # a damaged entry (a disk that lost the last write): computed and stored again
            self._distrust(path, "unreadable")
            return None
        if recorded is None or recorded != content_digest(tensors):
            # rewritten after it was stored (or by a pefomed without digests): valid tensors of the
            # right shape would otherwise train the run on features its tower never produced
            self._distrust(path, "no content digest" if recorded is None else "content does not match its digest")
            return None
        return tensors

    def _distrust(self, path: Path, why: str) -> None:
        self.distrusted += 1  # the first few named, then one line: a whole stale cache is not 10k warnings
        if self.distrusted <= 5:
            sys.stderr.write(f"warning: feature cache entry {path}: {why}; recomputing it from the image\n")
        elif self.distrusted == 6:
            sys.stderr.write("warning: more feature cache entries failed their check; recomputing them too\n")

    def write(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # unique per writer, renamed into place whole: a reader sees no file or the whole file
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
            save_file(tensors, str(temporary), metadata={DIGEST_KEY: content_digest(tensors)})
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    # ----------------------------------------------------------------- one training forward

    def prepare(self, keys: list[str] | None, stored: list | None = None) -> None:
        """Arm the cache for the next forward: what is stored of `keys` (`stored`, read ahead by a
        DataLoader worker; an image missing there is looked up again, an earlier micro-batch may
        have stored it since); decide whether the tower must run (an image missing here, or on any
        process under ZeRO-3)."""
        ahead = stored or [None] * len(keys or ())
        self._stored = [entry if entry is not None else self.read(key) for key, entry in zip(keys or (), ahead)]
        # an entry whose names, shapes or dtypes are not the tower's output is a miss; until this
        # process has seen the tower's output once, its first armed micro-batch runs the tower
        # (stored values are still the ones used), so that layout is known, not guessed
        self._stored = [entry if entry is not None and self._fits(entry) else None for entry in self._stored]
        missing = any(entry is None for entry in self._stored) or (keys is not None and self._layout is None)
        if self.sync_device is not None:  # every process takes part, with or without images
            import torch.distributed as dist

            flag = torch.tensor([1.0 if missing else 0.0], device=self.sync_device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            missing = bool(flag.item())
        self._keys, self._force = (None if keys is None else list(keys)), missing

    def done(self) -> None:
        self._keys, self._stored = None, []

    @contextmanager
    def serving(self, keys: list[str] | None, stored: list | None = None):
        self.prepare(keys, stored)
        try:
            yield
        finally:
            self.done()

    def features(self, pixel_values: torch.Tensor, compute) -> dict[str, torch.Tensor]:
        """The tower's output for `pixel_values` ({name: (images, ...)}): from the cache when
        armed and every image is stored, else `compute(pixel_values)` with the missing images
        stored and the stored ones taken from the cache."""
        keys, stored = self._keys, self._stored
        if keys is None:
            return compute(pixel_values)
        self._keys = None  # one forward per prepare: a second call (generation) computes
        if len(keys) != pixel_values.shape[0]:
            raise RuntimeError(f"feature cache: {len(keys)} image keys for {pixel_values.shape[0]} images")
        if not self._force:
            self.hits += len(keys)
            return {name: torch.stack([entry[name] for entry in stored]).to(pixel_values.device)
                    for name in stored[0]}
        computed = compute(pixel_values)
        names = set(computed)
        self._layout = {name: (tuple(value.shape[1:]), value.dtype) for name, value in computed.items()}
        out = {name: list(value.unbind(0)) for name, value in computed.items()}
        for i, (key, entry) in enumerate(zip(keys, stored)):
            if entry is not None and self._fits(entry):
                self.hits += 1
                for name in names:
                    out[name][i] = entry[name].to(computed[name].device)
            else:
                self.misses += 1
                self.write(key, {name: computed[name][i] for name in names})
        return {name: torch.stack(values) for name, values in out.items()}

    def _fits(self, entry: dict) -> bool:
        """The entry has the names, shapes and dtypes of the tower's output (per image): one of
        another shape is recomputed, not stacked into a traceback; unknown layout: not yet judged."""
        if self._layout is None:
            return True
        return set(entry) == set(self._layout) and all(
            (tuple(entry[name].shape), entry[name].dtype) == self._layout[name] for name in self._layout)

    def take_counts(self) -> tuple[int, int]:
        """(hits, misses) of this process since the last call."""
        counts = (self.hits, self.misses)
        self.total_hits += self.hits
        self.total_misses += self.misses
        self.hits = self.misses = 0
        return counts

    def close(self) -> None:
        """Give the model back its own vision path."""
        self._uninstall()
        self._uninstall = lambda: None

    def entries(self) -> tuple[int, int]:
        """(files, bytes) stored in this cache folder."""
        files = size = 0
        for path in self.root.glob("*/*.safetensors"):
            files += 1
            size += path.stat().st_size
        return files, size


def _install_composed(cache: FeatureCache, inner) -> None:
    def source(pixel_values, compute):
        return cache.features(pixel_values, lambda p: {"patch_tokens": compute(p)})["patch_tokens"]

    inner.patch_token_source = source

    def uninstall():
        inner.patch_token_source = None

    cache._uninstall = uninstall


def _llava_layers(inner) -> list[int]:
    layer = inner.config.vision_feature_layer
    return [layer] if isinstance(layer, int) else list(layer)


def _install_llava(cache: FeatureCache, tower, selected: list[int]) -> None:
    """Replace the tower's forward (on this instance only) with one that serves the hidden states
    LlavaModel.get_image_features selects from the cache. transformers 5 already returns
    `hidden_states` as a tuple of num_hidden_layers + 1 entries with None at the layers it did
    not ask for; the cached output is the same tuple, so the CLS crop and the projector downstream
    run their own code unchanged."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    original = tower.forward
    states = tower.config.num_hidden_layers + 1

    def forward(pixel_values=None, *args, **kwargs):
        spec = kwargs.get("output_hidden_states")
        if cache._keys is None or spec is None or spec is False:
            return original(pixel_values, *args, **kwargs)
        # transformers >= 5.2x asks for the layers it selects; 5.17 (the GPU machines') asks for
        # all of them (True) and then reads config.vision_feature_layer: serve those layers
        asked = selected if spec is True else ([spec] if isinstance(spec, int) else spec)
        layers = sorted({i % states for i in asked})

        def compute(pixels):
            out = original(pixels, *args, **kwargs)
            if len(out.hidden_states) != states:
                raise RuntimeError(f"feature cache: the vision tower returned {len(out.hidden_states)} hidden "
                                   f"states, expected {states}")
            return {f"hidden_state_{i}": out.hidden_states[i] for i in layers}

        features = cache.features(pixel_values, compute)
        hidden = [None] * states
        for i in layers:
            hidden[i] = features[f"hidden_state_{i}"]
        return BaseModelOutputWithPooling(last_hidden_state=hidden[-1], hidden_states=tuple(hidden))

    tower.forward = forward

    def uninstall():
        if tower.__dict__.get("forward") is forward:
            del tower.forward

    cache._uninstall = uninstall


def open_feature_cache(recipe, model, run_dir: Path, sync_device=None) -> FeatureCache:
    """Check the loaded model, fingerprint its tower (before DeepSpeed partitions it), and attach
    the cache to it. `sync_device`: where the processes' per-micro-batch agreement is reduced
    (ZeRO-3 with several processes), else None."""
    inner = innermost(model)
    family, tower = _family(inner)
    trainable = [name for name, p in tower.named_parameters() if p.requires_grad]
    if trainable:
        raise UserError(f"train.feature_cache needs a frozen vision tower, but {len(trainable)} of its parameters "
                        f"train (e.g. {trainable[0]})", hint="set train.feature_cache=false")
    layers = inner.config.vision_feature_layer if family == "composed" else _llava_layers(inner)
    print_ = fingerprint(family, tower, layers, recipe.model.attn_implementation)
    cache = FeatureCache(Path(run_dir) / run_dir_layout.FEATURE_CACHE_DIR / print_[:24], family, sync_device)
    if family == "composed":
        _install_composed(cache, inner)
    else:
        _install_llava(cache, tower, layers)
    return cache


def write_summary(cache: FeatureCache, run_dir: Path, hits: int, misses: int) -> dict:
    """RUN_DIR/feature_cache/summary.json: this run's hits and misses (images, all processes) and
    what the folder holds."""
    from pefomed.io import write_json

    files, size = cache.entries()
    summary = {"family": cache.family, "folder": str(cache.root.relative_to(Path(run_dir))), "hits": hits,
               "misses": misses, "entries": files, "bytes": size}
    write_json(Path(run_dir) / run_dir_layout.FEATURE_CACHE_DIR / SUMMARY_JSON, summary)
    return summary
