"""RUN_DIR, in one place: its layout, its checks, saving and loading what training changed, loading
a whole run, and a run as the starting point of another (two-stage training).

    RUN_DIR/
      recipe.yaml          the fully resolved recipe (the run's definition)
      base_model/          kind tiny only: the base, built in code (pefomed.models.tiny)
      processor/           the processor the run trained with (chat template included)
      adapter/             PEFT methods: what PeftModel.from_pretrained loads
      weights/             methods without an adapter (projector, full): model.safetensors
      best/                the best periodic evaluation's adapter/ or weights/ files
      checkpoints/         resumable DeepSpeed checkpoints (pefomed.train.checkpoints); latest
      train_log.jsonl  eval_log.jsonl  best.json  last.json  trainable.json  tensorboard/
      length_budget.json   the training split's token budget, measured before step 1
      feature_cache/       train.feature_cache: the frozen vision tower's output per image, summary.json

Train, infer and export all go through this module, so "adapter or weights?" has one answer
(`TrainedWeights.find`) and a run loads one way (`load_run`) whoever asks. A run is saved with
its recipe, and `load_run` rebuilds the model from that recipe alone, as nanoGPT's checkpoint
carries its model args.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pefomed.errors import UserError
from pefomed.io import atomic_folder, folder_in_place, old_name, recover_folder
from pefomed.models.bundle import ModelBundle, import_peft, is_partitioned
from pefomed.models.loader import load_base, materialize_base
from pefomed.models.peft_methods import quantize_base
from pefomed.options import command_line
from pefomed.recipe import Recipe, load_recipe

RECIPE_FILE = "recipe.yaml"
PROCESSOR_DIR = "processor"
ADAPTER_DIR = "adapter"  # PEFT adapter methods
WEIGHTS_DIR = "weights"  # methods without an adapter (projector, full): the trained parameters
WEIGHTS_FILE = "model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BEST_DIR = "best"
CHECKPOINTS_DIR = "checkpoints"
TRAIN_LOG = "train_log.jsonl"
EVAL_LOG = "eval_log.jsonl"
BEST_JSON = "best.json"
LAST_JSON = "last.json"
TRAINABLE_JSON = "trainable.json"
TENSORBOARD_DIR = "tensorboard"
LENGTH_BUDGET_JSON = "length_budget.json"  # the training split's token counts (pefomed.data.length_budget)
FEATURE_CACHE_DIR = "feature_cache"  # train.feature_cache: frozen vision-tower outputs (pefomed.models.feature_cache)


LOCK_FILE = ".pefomed-train.lock"


@contextmanager
def exclusive(run_dir: Path):
    """Held by the one `pefomed train` writing RUN_DIR: a second one started on the same folder
    refuses at once instead of interleaving its writes. An OS lock (flock), so a killed run never
    leaves a stale lock behind."""
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(f"{run_dir}: another `pefomed train` is writing this run ({holder}); wait for it to "
                            f"finish or choose another `out`") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def holds_a_run(run_dir: Path) -> bool:
    """True once a run has saved something worth keeping (a checkpoint or trained weights); a run
    that failed before its first checkpoint may simply be started again in the same folder."""
    run_dir = Path(run_dir)
    return any((run_dir / name).exists() or old_name(run_dir / name).exists()
               for name in (f"{CHECKPOINTS_DIR}/latest", ADAPTER_DIR, WEIGHTS_DIR))


@dataclass(frozen=True)
class TrainedWeights:
    """What training changed: a PEFT adapter folder, or a safetensors file of trained parameters."""

    folder: Path
    is_adapter: bool

    @property
    def file(self) -> Path:
        return self.folder / (ADAPTER_WEIGHTS if self.is_adapter else WEIGHTS_FILE)

    @classmethod
    def find(cls, folder: Path) -> "TrainedWeights | None":
        """The trained weights saved directly in `folder` (an adapter/, weights/ or best/ folder),
        or in its whole old copy when a save was killed between its renames (pefomed.io)."""
        folder = folder_in_place(folder)
        if (folder / ADAPTER_CONFIG).is_file():
            return cls(folder, True)
        if (folder / WEIGHTS_FILE).is_file():
            return cls(folder, False)
        return None

    @classmethod
    def of_run(cls, run_dir: Path) -> "TrainedWeights | None":
        return cls.find(Path(run_dir) / ADAPTER_DIR) or cls.find(Path(run_dir) / WEIGHTS_DIR)


@dataclass(frozen=True)
class Run:
    """A finished run: its folder, and which trained weights to use (the last, or best/)."""

    root: Path
    weights: TrainedWeights

    @property
    def recipe_file(self) -> Path:
        return self.root / RECIPE_FILE

    @property
    def processor_dir(self) -> Path:
        return self.root / PROCESSOR_DIR


def is_run_dir(path: Path) -> bool:
    """RUN_DIR itself, or its best/ folder."""
    path = Path(path)
    return (path / RECIPE_FILE).is_file() or (path.name == BEST_DIR and (path.parent / RECIPE_FILE).is_file())


def open_run(path: str | Path) -> Run:
    """RUN_DIR (its last weights) or RUN_DIR/best (the best evaluation's); cheap checks only, so a
    wrong path fails before any model is loaded."""
    path = Path(path)
    if path.name == BEST_DIR and not (path / RECIPE_FILE).is_file() and (path.parent / RECIPE_FILE).is_file():
        weights = TrainedWeights.find(path)
        if weights is None:
            raise UserError(f"{path}: no trained weights in the best/ folder (did periodic evaluation run?)")
        return Run(path.parent, weights)
    if not (path / RECIPE_FILE).is_file():
        raise UserError(f"{path}: not a run folder (no {RECIPE_FILE}); pass the RUN_DIR written by "
                        f"{command_line('train', out='RUN_DIR')}")
    weights = TrainedWeights.of_run(path)
    if weights is None:
        raise UserError(f"{path}: the run has no trained weights yet (training did not finish?); "
                        f"continue it with {command_line('train', resume=path)}")
    return Run(path, weights)


def check_run_dir(run_dir: str | Path) -> None:
    open_run(run_dir)


def check_remote_code(recipe: Recipe, where: Path, trust_remote_code: bool) -> None:
    """Code shipped with a model runs only when the user says so on the command line, every time:
    a RUN_DIR's recipe (which anyone could have written) cannot switch it on by itself."""
    if recipe.model.trust_remote_code and not trust_remote_code:
        raise UserError(f"{where}: the recipe sets model.trust_remote_code, which would run Python code shipped "
                        f"with the model", hint="pass `trust_remote_code` if you trust that code")


def load_processor(run: Run, bundle: ModelBundle):
    """The processor the run trained with (RUN_DIR/processor), else the base model's own."""
    if run.processor_dir.is_dir():
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(run.processor_dir)
    return bundle.processor


def load_trained_weights(model, path: Path) -> None:
    """Trained parameters saved under the base model's own names (projector / full methods)."""
    from safetensors.torch import load_file

    state = load_file(path)
    # Under ZeRO-3 (a partitioned load, pefomed.models.loader) the parameters hold only this
    # process's partition: gather the ones being replaced, write them, and let DeepSpeed partition
    # the new values again (every process calls this with the same file).
    partitioned = [p for n, p in model.named_parameters() if n in state and is_partitioned(p)]
    if partitioned:
        import deepspeed

        with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0):
            result = model.load_state_dict(state, strict=False)
    else:
        result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise UserError(f"{path}: {len(result.unexpected_keys)} weights do not fit the base model "
                        f"(e.g. {result.unexpected_keys[0]}); was the base model changed after training?")


def apply_trained(model, weights: TrainedWeights):
    """The base model with the run's trained weights: a PeftModel for adapters, else the base itself."""
    if weights.is_adapter:
        import_peft()  # bitsandbytes without its hub-kernel lookup
        from peft import PeftModel

        return PeftModel.from_pretrained(model, weights.folder)
    load_trained_weights(model, weights.file)
    return model


def load_run(path: str | Path, precision: str | None = None, trust_remote_code: bool = False,
             device: str | None = None) -> tuple[Recipe, ModelBundle]:
    """The trained model of RUN_DIR (or RUN_DIR/best), in eval mode, with its processor."""
    import torch

    run = open_run(path)
    recipe = load_recipe(run.recipe_file)
    check_remote_code(recipe, run.recipe_file, trust_remote_code)
    precision = precision or ("fp32" if not torch.cuda.is_available() else recipe.train.precision)
    bundle = load_base(materialize_base(recipe.model, run.root), recipe.model, precision)
    bundle.processor = load_processor(run, bundle)
    if recipe.method.quantize:  # QLoRA: the adapter runs on the same 4-bit base it was trained on
        quantize_base(bundle.model, recipe.method)
    model = apply_trained(bundle.model, run.weights)
    model.eval()
    device = device or ("cuda" if torch.cuda.is_available() else None)
    if device:
        model.to(device)
    bundle.model = model
    return recipe, bundle


def trainable_state_dict(model, stage: int) -> dict:
    """Full (gathered) copies of the trainable parameters, on CPU, on every rank."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
            return {n: p.detach().to("cpu", copy=True) for n, p in named}
    return {n: p.detach().to("cpu", copy=True) for n, p in named}


def save_trained(model, run_dir: Path, stage: int, rank: int, name: str | None = None) -> Path:
    """Write what training changed: RUN_DIR/adapter (peft) or RUN_DIR/weights (projector / full).

    Under ZeRO-3 each process holds only a shard of every parameter, and saving the peft model
    naively writes empty tensors (a known failure of fine-tuning tools): every process joins the
    gather, then rank 0 writes to a temporary folder renamed into place. `name` overrides the
    folder name (best/ for the best evaluation so far).
    """
    import_peft()  # bitsandbytes without its hub-kernel lookup
    from peft import PeftModel
    from safetensors.torch import save_file

    is_peft = isinstance(model, PeftModel)
    out_dir = Path(run_dir) / (name or (ADAPTER_DIR if is_peft else WEIGHTS_DIR))
    state = trainable_state_dict(model, stage)
    if rank != 0:
        return out_dir
    # pefomed.io.atomic_folder: a kill at any instruction leaves the old folder (or none) or the
    # new one whole, never a run whose last checkpoint is final but whose weights are half there;
    # rank 0 holds RUN_DIR's lock (exclusive), so it may clear what killed saves left behind
    with atomic_folder(out_dir, sole_writer=True) as tmp:
        if is_peft:
            model.save_pretrained(tmp, state_dict=state)
        else:
            save_file({k: v.contiguous() for k, v in state.items()}, tmp / WEIGHTS_FILE)
    return out_dir


def recover_saved(run_dir: Path) -> None:
    """As RUN_DIR's writer: finish or undo the folder swaps a killed save left half done."""
    for name in (ADAPTER_DIR, WEIGHTS_DIR, BEST_DIR):
        recover_folder(Path(run_dir) / name)


class StartingPoint:
    """Two-stage training: start from an earlier run's trained weights (train.init_from).

    Stage 1 (e.g. caption alignment) may have trained an adapter plus the projector (adapter/)
    or the projector alone (weights/); stage 2 starts from whatever it left.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.weights = TrainedWeights.of_run(self.run_dir)
        if self.weights is None:
            raise UserError(f"train.init_from: {self.run_dir} has no adapter/ or weights/ (is it a finished run?)")

    def load_into_base(self, model) -> None:
        if not self.weights.is_adapter:
            load_trained_weights(model, self.weights.file)

    def load_into_adapter(self, model) -> None:
        if not self.weights.is_adapter:
            return
        import_peft()  # bitsandbytes without its hub-kernel lookup
        from peft import PeftModel, set_peft_model_state_dict
        from safetensors.torch import load_file

        if not isinstance(model, PeftModel):
            raise UserError(f"train.init_from: {self.run_dir} trained an adapter; this run's method has none to load it into")
        result = set_peft_model_state_dict(model, load_file(self.weights.file))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise UserError(f"train.init_from: {len(unexpected)} adapter weights of {self.run_dir} do not fit this "
                            f"run's method (e.g. {unexpected[0]}); use the same method and target modules")
