"""Training-step throughput: pefomed's DeepSpeed loop vs a plain transformers Trainer + peft LoRA,
and each of pefomed's speed/memory levers against the same loop with that lever turned off.

Both sides train the same model folder, with the same LoRA config (pefomed's build_peft_config:
same targets, rank, projector in modules_to_save), the same synthetic DATA_DIR, the same batches
built by pefomed.data.collate.Collator, batch size, optimizer hyper-parameters and step count.
Each measurement runs in its own subprocess, so peak memory is that run's alone (CUDA:
max_memory_allocated; CPU: the process's VmHWM, its own peak resident memory).

Levers (--levers; each is one more pefomed run in the same invocation, compared with the default
pefomed run, whose settings are the recipe's defaults):
  workers         train.num_workers=2 (batches built in DataLoader workers) vs 0
  answer_only     train.answer_only_logits (default on) vs off: LM head over answer positions only
  qlora           method.quantize=4bit (NF4 frozen LLM, bitsandbytes) vs the base in the run's dtype
  checkpointing   train.gradient_checkpointing=true vs false
The ratio is lever on / lever off, for samples/s and for peak memory.

Timed: the wall time between the end of optimizer step `warmup` and the end of the last step
(data encoding + collation + forward + backward + optimizer step; model build, DeepSpeed/Trainer
setup and checkpoint saving are outside the window). pefomed's side reads its own train_log.jsonl
(one row per step); the Trainer side uses a callback at each step end.

Usage:
  python benchmarks/bench_train.py                         # tiny + small on this machine (CPU: fp32)
  python benchmarks/bench_train.py --model-size 7b         # GPU box: random Llama-2-7B-shaped LLaVA, bf16
  python benchmarks/bench_train.py --json results.json     # also write the numbers as JSON
  python benchmarks/bench_train.py --levers none            # pefomed vs Trainer only
  python benchmarks/bench_train.py --repeat 3 --threads 1   # a shared CPU: round-robin, medians, 1 thread
  python benchmarks/bench_train.py --levers qlora checkpointing --skip-baseline

Sizes: tiny (pefomed's built-in tiny LLaVA), small (text_hidden=256, text_layers=4),
llava-mini (the 7b code path at toy scale, to check the benchmark itself on a CPU),
7b (Llama-2-7B text config + ViT-g-shaped CLIP vision tower at 224 px = 256 image tokens; random
weights, nothing downloaded; ~15 GB written to a temporary folder).

Model-FLOPs utilisation (reported when the peak is known: CUDA devices we recognise, or --peak-tflops):
  per LLM token:   2*N_llm (forward) + 2*N_llm (backward, activation gradients, needed all the way
                   down to the trainable projector) + 2*N_train_llm (weight gradients, trainable
                   parameters only) + 12*L*d*s (attention scores, forward + backward; PaLM convention)
  per image:       P * (2*N_vis + 4*L_vis*d_vis*P)   (frozen tower, no trainable parameter below
                   it: forward only; P = patches)
                 + T_img * 6*N_proj                  (the trainable projector, T_img image tokens)
  N_llm counts the decoder layers and the LM head, not the embedding lookup. With full fine-tuning
  N_train_llm = N_llm and the LLM term is the familiar 6N; with LoRA it is ~4N.
  MFU = model FLOPs per second / peak dense bf16 FLOPs of the device.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    "tiny": {"builder": "tiny", "tiny": {}},
    "small": {"builder": "tiny", "tiny": {"text_hidden": 256, "text_layers": 4}},
    "llava-mini": {"builder": "llava", "text": dict(hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                                                    num_attention_heads=4, vocab_size=1024),
                   "vision": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                  image_size=56, patch_size=14)},
    "7b": {"builder": "llava",
           # Llama-2-7B; vocab 32000 + LLaVA's image token, padded to a multiple of 64
           "text": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                        vocab_size=32064),
           # EVA ViT-g/14 shape (PeFoMed / MiniGPT-v2's vision encoder) in a CLIP vision tower
           "vision": dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=40, num_attention_heads=16,
                          image_size=224, patch_size=14)},
}
# LoRA settings per size: the tiny-demo recipe's for the toy sizes, PeFoMed's r=64 for 7b.
METHOD = {"7b": ["method.r=64", "method.alpha=16"]}
# Each lever: the overrides that turn it on and off; the side equal to the recipe's defaults is the
# default pefomed run, measured once per size and shared by every lever.
LEVERS = {
    "workers": {"title": "train.num_workers=2", "on": ["train.num_workers=2"], "off": []},
    "answer_only": {"title": "train.answer_only_logits", "on": [], "off": ["train.answer_only_logits=false"]},
    "qlora": {"title": "method.quantize=4bit", "on": ["method.quantize=4bit"], "off": []},
    "checkpointing": {"title": "train.gradient_checkpointing", "on": ["train.gradient_checkpointing=true"], "off": []},
}
# Peak dense bf16 tensor FLOP/s (vendor data sheets, without sparsity).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0,
               "A10G": 125.0, "L4": 121.0, "RTX 4090": 165.0}


# ---------------------------------------------------------------- helpers used by the workers

def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _status_mb(key: str) -> float:
    """A /proc/self/status memory line, MB. VmHWM (peak) rather than getrusage's ru_maxrss: Linux
    carries ru_maxrss over fork and exec, so a worker would inherit this script's own peak."""
    try:
        with open("/proc/self/status") as handle:
            return int(next(line for line in handle if line.startswith(key)).split()[1]) / 1024
    except (OSError, StopIteration):  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    return _status_mb("VmRSS:")


def _peak_mb() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else _status_mb("VmHWM:")


def _recipe(spec: dict):
    from pefomed.recipe import load_recipe

    overrides = ["model.kind=hf", f"model.name_or_path={spec['model_dir']}",
                 f"train.max_steps={spec['steps']}", f"train.batch_size={spec['batch_size']}",
                 "train.log_every=1", "train.grad_accum=1", "train.warmup_steps=0",
                 f"train.precision={spec['precision']}", f"train.deepspeed={spec['zero']}",
                 f"data.max_length={spec['max_length']}", *METHOD.get(spec["size"], []), *spec.get("overrides", [])]
    recipe = load_recipe("tiny-demo", overrides)
    recipe.data.dir = spec["data_dir"]
    return recipe


def _build_llava(size: dict, out: Path) -> None:
    """A random-weight LLaVA of the given shape, with the tiny model's tokenizer (ids fit any vocab)."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    from pefomed.models.tiny import CHAT_TEMPLATE, IMAGE_TOKEN, train_tokenizer

    tokenizer = train_tokenizer(512)
    vis = size["vision"]
    image_processor = CLIPImageProcessor(size={"shortest_edge": vis["image_size"]},
                                         crop_size={"height": vis["image_size"], "width": vis["image_size"]})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=vis["patch_size"],
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    text = LlamaConfig(**size["text"], num_key_value_heads=size["text"]["num_attention_heads"],
                       max_position_embeddings=4096, rms_norm_eps=1e-5, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       tie_word_embeddings=False)
    config = LlavaConfig(vision_config=CLIPVisionConfig(**vis, projection_dim=vis["hidden_size"]), text_config=text,
                         image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu")
    # Build on the GPU in bf16 when there is one: initialising 7B parameters on a CPU takes minutes.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.dtype = dtype  # config.json must state the dtype the weights are stored in
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _param_counts(model_dir: str) -> dict:
    """Parameter counts the FLOPs estimate needs, from the config alone (meta device: no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    count = {"vision": 0, "projector": 0, "llm_layers": 0, "lm_head": 0, "embed": 0}
    for name, param in model.named_parameters():
        if "vision_tower" in name:
            count["vision"] += param.numel()
        elif "multi_modal_projector" in name:
            count["projector"] += param.numel()
        elif "lm_head" in name:
            count["lm_head"] += param.numel()
        elif "embed_tokens" in name:
            count["embed"] += param.numel()
        else:
            count["llm_layers"] += param.numel()
    vis, text = config.vision_config, config.text_config
    patches = (vis.image_size // vis.patch_size) ** 2
    return {**count, "text_layers": text.num_hidden_layers, "text_hidden": text.hidden_size,
            "vision_layers": vis.num_hidden_layers, "vision_hidden": vis.hidden_size, "patches": patches,
            "total": sum(count.values())}


def _data_shape(spec: dict) -> dict:
    """Mean LLM sequence length (padded, as computed) and real tokens per sample, over the batches."""
    from transformers import AutoProcessor

    from pefomed.data.collate import Collator
    from pefomed.records import read_split

    recipe = _recipe(spec)
    processor = AutoProcessor.from_pretrained(spec["model_dir"])
    collator = Collator(processor, recipe.data, spec["data_dir"], train=True)
    samples = read_split(spec["data_dir"], "train")
    bs = spec["batch_size"]
    padded, real, images = 0, 0, 0
    for start in range(0, len(samples) - bs + 1, bs):
        batch = collator([collator.encode(s) for s in samples[start:start + bs]])
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
        images += sum(len(s.images) for s in samples[start:start + bs])
    n = (len(samples) // bs) * bs
    image_tokens = int((batch["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids("<image>")).sum())
    return {"padded_per_sample": padded / n, "tokens_per_sample": real / n, "images_per_sample": images / n,
            "image_tokens_per_image": image_tokens / max(len(samples[0].images), 1)}


# ---------------------------------------------------------------- workers (one subprocess each)

def worker_build(spec: dict) -> dict:
    size = SIZES[spec["size"]]
    out = Path(spec["model_dir"])
    if size["builder"] == "tiny":
        from pefomed.models.tiny import build_tiny
        from pefomed.models.tiny import TinyConfig

        build_tiny(TinyConfig(**size["tiny"]), out)
    else:
        _build_llava(size, out)
    return {"params": _param_counts(str(out)), "data": _data_shape(spec)}


def worker_pefomed(spec: dict) -> dict:
    from pefomed.train.loop import train

    recipe = _recipe(spec)
    run = Path(spec["work"]) / f"run-{spec['size']}-{spec.get('label', 'default')}"
    if run.exists():  # --work kept from an earlier invocation: train afresh
        import shutil

        shutil.rmtree(run)
    rss0 = _rss_mb()
    train(recipe, run)
    all_rows = [json.loads(line) for line in open(run / "train_log.jsonl")]
    rows = all_rows[spec["warmup"]:]
    seconds = sum(spec["batch_size"] / r["samples_per_s"] for r in rows)
    trainable = json.loads((run / "trainable.json").read_text())
    return {"samples": len(rows) * spec["batch_size"], "seconds": seconds, "peak_mb": _peak_mb(),
            "rss_before_mb": rss0, "trainable": trainable["all"]["trainable"],
            "trainable_llm": trainable["components"].get("llm", {}).get("trainable", 0),
            # for callers that look inside the run (benchmarks/gpu_check.py): the timed steps' wait
            # for data and wall time, and every step's wall time (per-epoch comparisons)
            "data_wait_s": sum(r["data_wait_s"] for r in rows), "elapsed_s": sum(r["elapsed_s"] for r in rows),
            "step_seconds": [r["elapsed_s"] for r in all_rows],
            "feature_cache_hits": sum(r.get("feature_cache_hits", 0) for r in all_rows)}


def worker_baseline(spec: dict) -> dict:
    import torch
    from peft import get_peft_model
    from transformers import (AutoModelForImageTextToText, AutoProcessor, Trainer, TrainerCallback,
                              TrainingArguments)

    from pefomed.data.collate import Collator
    from pefomed.models.components import count_parameters
    from pefomed.models.loader import quiet_transformers, torch_dtype
    from pefomed.models.peft_methods import build_peft_config
    from pefomed.records import read_split

    quiet_transformers()
    recipe = _recipe(spec)
    cuda = torch.cuda.is_available()
    rss0 = _rss_mb()
    processor = AutoProcessor.from_pretrained(spec["model_dir"])
    model = AutoModelForImageTextToText.from_pretrained(spec["model_dir"], dtype=torch_dtype(spec["precision"]))
    model = get_peft_model(model, build_peft_config(model, recipe.method))
    params = count_parameters(model)
    collator = Collator(processor, recipe.data, spec["data_dir"], train=True)
    samples = read_split(spec["data_dir"], "train")

    class Samples(torch.utils.data.Dataset):
        def __len__(self):
            return len(samples)

        def __getitem__(self, i):
            return samples[i]

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()  # time finished work, not queued kernels
            self.ends.append(time.perf_counter())

    timer = StepTimer()
    t = recipe.train
    args = TrainingArguments(
        output_dir=str(Path(spec["work"]) / f"trainer-{spec['size']}"), per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=1, max_steps=t.max_steps, learning_rate=t.lr, weight_decay=t.weight_decay,
        adam_beta1=t.betas[0], adam_beta2=t.betas[1], max_grad_norm=t.max_grad_norm or 0.0,
        lr_scheduler_type="cosine", warmup_steps=0, optim="adamw_torch", seed=t.seed,
        bf16=spec["precision"] == "bf16", use_cpu=not cuda, report_to="none", save_strategy="no",
        logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False)
    # Same encoding and collation as pefomed, done in the loop like pefomed does (not precomputed).
    trainer = Trainer(model=model, args=args, train_dataset=Samples(),
                      data_collator=lambda items: collator([collator.encode(s) for s in items]), callbacks=[timer])
    trainer.train()
    seconds = timer.ends[-1] - timer.ends[spec["warmup"] - 1]
    return {"samples": (len(timer.ends) - spec["warmup"]) * t.batch_size, "seconds": seconds, "peak_mb": _peak_mb(),
            "rss_before_mb": rss0, "trainable": params["all"]["trainable"]}


WORKERS = {"build": worker_build, "pefomed": worker_pefomed, "baseline": worker_baseline}


def _run_worker(kind: str, spec: dict, timeout: float | None = None) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if spec.get("threads"):
        # before torch is imported in the worker: OpenMP reads it at start-up
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--spec", json.dumps(spec)],
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as stopped:  # the worker was killed: say what it printed so far
        sys.stderr.write(_text(stopped.stdout)[-4000:] + _text(stopped.stderr)[-8000:])
        raise SystemExit(f"{kind} worker for {spec['size']} timed out after {timeout:.0f} s") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"{kind} worker for {spec['size']} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def _text(output) -> str:
    """A killed subprocess's captured output: bytes or None, whatever text=True asked for."""
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


def make_spec(size: str, work: Path, steps: int, warmup: int, batch_size: int, precision: str, zero: str = "zero2",
              threads: int | None = None, n_train: int | None = None) -> dict:
    """A size's worker spec, with its synthetic DATA_DIR written under `work` when missing.
    n_train: training samples (default steps * batch_size: one epoch covers every measured step,
    so no sample is seen twice; fewer make the run several epochs)."""
    from pefomed.data.synthetic import write_bright_spot_dataset

    image_size = SIZES[size].get("vision", {}).get("image_size", 32)
    n_train = n_train or steps * batch_size
    data_dir = work / (f"data-{size}" if n_train == steps * batch_size else f"data-{size}-{n_train}")
    if not (data_dir / "manifest.json").is_file():
        write_bright_spot_dataset(data_dir, n_train=n_train, n_test=2, size=image_size)
    return {"size": size, "model_dir": str(work / f"model-{size}"), "data_dir": str(data_dir), "work": str(work),
            "steps": steps, "warmup": warmup, "batch_size": batch_size, "precision": precision, "zero": zero,
            "threads": threads, "max_length": 512 if SIZES[size]["builder"] == "llava" else 128}


# ---------------------------------------------------------------- FLOPs and reporting

def flops_per_sample(params: dict, data: dict, trainable_llm: int) -> float:
    """Model FLOPs of one training sample (forward + backward), as documented at the top."""
    n_llm = params["llm_layers"] + params["lm_head"]
    s = data["padded_per_sample"]
    per_token = 4 * n_llm + 2 * trainable_llm + 12 * params["text_layers"] * params["text_hidden"] * s
    p = params["patches"]
    per_image = (p * (2 * params["vision"] + 4 * params["vision_layers"] * params["vision_hidden"] * p)
                 + data["image_tokens_per_image"] * 6 * params["projector"])
    return s * per_token + data["images_per_sample"] * per_image


def _peak_tflops(override: float | None) -> tuple[float | None, str]:
    import torch

    if override:
        return override, f"{override} TFLOP/s (--peak-tflops)"
    if not torch.cuda.is_available():
        return None, "n/a on CPU (give --peak-tflops)"
    name = torch.cuda.get_device_name()
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value, f"{value} TFLOP/s bf16 dense ({name})"
    return None, f"unknown peak for {name} (give --peak-tflops)"


def _summarise(size: str, built: dict, side: dict, peak_tflops: float | None) -> dict:
    sps = side["samples"] / side["seconds"]
    out = {"samples_per_s": sps, "tokens_per_s": sps * built["data"]["tokens_per_sample"],
           "peak_memory_mb": side["peak_mb"], "memory_before_mb": side["rss_before_mb"],
           "trainable_params": side["trainable"], "measured_samples": side["samples"], "seconds": side["seconds"]}
    trainable_llm = side.get("trainable_llm", side["trainable"] - built["params"]["projector"])
    flops = flops_per_sample(built["params"], built["data"], trainable_llm) * sps
    out["model_tflops_per_s"] = flops / 1e12
    out["mfu"] = flops / (peak_tflops * 1e12) if peak_tflops else None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-size", nargs="+", default=["tiny", "small"], choices=sorted(SIZES))
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: 16 toy sizes, 30 for 7b)")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--zero", default=None, help="pefomed's train.deepspeed (default: zero2)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per worker (OMP_NUM_THREADS; default: torch's). 1 on a shared machine: "
                             "OpenMP threads that wait for a core another job holds slow a step many-fold")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every configuration this many times, round-robin, and report the median")
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=[*LEVERS, "none"],
                        help="levers to measure against the default pefomed run (default: all; none: skip)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: known GPUs)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--work", type=Path, default=None, help="keep models, data and runs here (default: a temp dir)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if not _cuda():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        print("RESULT " + json.dumps(WORKERS[args.worker](json.loads(args.spec))), flush=True)
        return

    import torch

    cuda = torch.cuda.is_available()
    if "7b" in args.model_size and not cuda:
        raise SystemExit("--model-size 7b needs a CUDA GPU (about 40 GB for bf16 LoRA training)")
    precision = "bf16" if cuda else "fp32"
    peak, peak_text = _peak_tflops(args.peak_tflops)
    work_ctx = tempfile.TemporaryDirectory(prefix="bench-train-") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    work.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if cuda else f"CPU, {os.cpu_count()} cores, torch threads per worker {args.threads or torch.get_num_threads()}"
    print(f"device: {device}; precision {precision}; batch {args.batch_size}; warmup {args.warmup} steps; MFU peak: {peak_text}")
    results = {"device": device, "precision": precision, "batch_size": args.batch_size, "sizes": {}}
    for size in args.model_size:
        steps = args.steps or (30 if size == "7b" else 16)
        if args.warmup < 1:
            raise SystemExit("--warmup must be at least 1 (the timing starts at the end of a step)")
        if steps <= args.warmup:
            raise SystemExit("--steps must be larger than --warmup")
        if args.repeat < 1:
            raise SystemExit("--repeat must be at least 1")
        spec = make_spec(size, work, steps, args.warmup, args.batch_size, precision, args.zero or "zero2", args.threads)
        # The toy models build in a few seconds in this process; a 7B build gets its own process so
        # that its GPU memory is released before anything is measured.
        built = worker_build(spec) if SIZES[size]["builder"] == "tiny" else _run_worker("build", spec)
        row = {"params": built["params"], "data": built["data"], "steps": steps}
        # Every configuration this size needs: the default pefomed run (shared by every lever), the
        # Trainer baseline, and each lever's other side. With --repeat they run round-robin, so a
        # load change on a shared machine hits every configuration alike; the median counts.
        levers = [name for name in args.levers if name != "none"]
        if "qlora" in levers and not _has_bitsandbytes():
            print("  (skipping qlora: bitsandbytes is not installed; pip install \"pefomed[qlora]\")")
            levers.remove("qlora")
        configs: dict = {(): ("pefomed", {**spec, "label": "default"})}
        if not args.skip_baseline:
            configs["baseline"] = ("baseline", spec)
        for lever in levers:
            for side in ("on", "off"):
                key = tuple(LEVERS[lever][side])
                configs.setdefault(key, ("pefomed", {**spec, "overrides": list(key), "label": f"{lever}-{side}"}))
        measured: dict = {key: [] for key in configs}
        for _ in range(args.repeat):
            for key, (kind, worker_spec) in configs.items():
                measured[key].append(_summarise(size, built, _run_worker(kind, worker_spec), peak))
        runs = {key: _median_run(values) for key, values in measured.items()}
        row["pefomed"] = runs[()]
        row["levers"] = {}
        for lever in levers:
            on, off = runs[tuple(LEVERS[lever]["on"])], runs[tuple(LEVERS[lever]["off"])]
            row["levers"][lever] = {
                "title": LEVERS[lever]["title"], "on": on, "off": off,
                "ratio_samples_per_s": on["samples_per_s"] / off["samples_per_s"],
                "ratio_peak_memory": on["peak_memory_mb"] / off["peak_memory_mb"]}
        if not args.skip_baseline:
            row["baseline"] = runs["baseline"]
            row["ratio_samples_per_s"] = row["pefomed"]["samples_per_s"] / row["baseline"]["samples_per_s"]
            row["ratio_peak_memory"] = row["pefomed"]["peak_memory_mb"] / row["baseline"]["peak_memory_mb"]
        results["sizes"][size] = row
        _print_row(size, row, cuda)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if work_ctx:
        work_ctx.cleanup()


def _median_run(values: list[dict]) -> dict:
    """The run with the median samples/s (all of its numbers, so they stay consistent), plus every
    repeat's samples/s; peak memory is the largest of the repeats."""
    ordered = sorted(values, key=lambda v: v["samples_per_s"])
    run = dict(ordered[(len(ordered) - 1) // 2])
    run["peak_memory_mb"] = max(v["peak_memory_mb"] for v in values)
    run["repeats_samples_per_s"] = [v["samples_per_s"] for v in values]
    return run


def _repeats(run: dict) -> str:
    values = run.get("repeats_samples_per_s", [])
    return f"  (repeats: {', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""


def _has_bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def _print_row(size: str, row: dict, cuda: bool) -> None:
    p = row["params"]
    print(f"\n== {size}: {p['total'] / 1e6:.2f} M parameters (vision {p['vision'] / 1e6:.2f} M, projector "
          f"{p['projector'] / 1e6:.3f} M, LLM {(p['llm_layers'] + p['lm_head'] + p['embed']) / 1e6:.2f} M); "
          f"{row['data']['tokens_per_sample']:.0f} tokens/sample; {row['steps']} steps")
    mem = "peak GPU allocated" if cuda else "peak RSS"
    for side in ("pefomed", "baseline"):
        if side not in row:
            continue
        r = row[side]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"  {side:9s} {r['samples_per_s']:8.2f} samples/s {r['tokens_per_s']:10.0f} tokens/s  "
              f"{mem} {r['peak_memory_mb']:8.0f} MB (process before model: {r['memory_before_mb']:.0f} MB)  "
              f"{r['model_tflops_per_s']:.4f} model TFLOP/s  MFU {mfu}  trainable {r['trainable_params']:,}"
              + _repeats(r))
    if "baseline" in row:
        print(f"  ratio pefomed / Trainer: samples/s x{row['ratio_samples_per_s']:.2f}, "
              f"peak memory x{row['ratio_peak_memory']:.2f}")
    for lever in row.get("levers", {}).values():
        on, off = lever["on"], lever["off"]
        print(f"  lever {lever['title']:30s} on {on['samples_per_s']:8.2f} / off {off['samples_per_s']:8.2f} "
              f"samples/s = x{lever['ratio_samples_per_s']:.2f};  {mem} on {on['peak_memory_mb']:.0f} / off "
              f"{off['peak_memory_mb']:.0f} MB = x{lever['ratio_peak_memory']:.2f}" + _repeats(on))


if __name__ == "__main__":
    main()
