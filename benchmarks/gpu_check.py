"""One prepared command that proves pefomed's 7B GPU path and measures it (issue 24).

Run from the repository root:

    python benchmarks/gpu_check.py --out DIR            # a CUDA GPU: the `7b` size, bf16
    python benchmarks/gpu_check.py --out DIR --smoke    # any CPU: the `llava-mini` size, fp32

Steps, each in its own subprocess (its own process group) with its own time box; a step that fails
or runs past its box is recorded with its error and the next step still runs:

  install  pip-install the carried wheel folder (--wheels, default wheels/gpu/, written by
           tools/gpu_wheels.py) with --no-index --no-deps: pefomed itself (`-e .` with
           --no-build-isolation, or its wheel), deepspeed, bitsandbytes and the dependencies the
           GPU image lacks; a wheel whose distribution the box already has, in a version pefomed's
           requirements (and the carried wheels' own) accept, is left alone. Skipped, recorded,
           with --smoke or without the folder.
  build    the random-weight model: bench_train's `7b` (Llama-2-7B + ViT-g/14-shaped LLaVA, bf16,
           built on the GPU) or `llava-mini` (--smoke), and its synthetic DATA_DIR.
  train    bench_train's workers, one subprocess per measurement: pefomed's training path vs
           transformers Trainer + peft (same model, batches and LoRA config; r=64 on q/v for 7b):
           samples/s, tokens/s, peak memory (CUDA max_memory_allocated), model TFLOP/s and MFU
           (docs/benchmarks.md's trainable-aware 6N), data wait; then each lever on and off:
           QLoRA 4-bit (micro-batch 4, gradient checkpointing on both sides; when bitsandbytes
           imports), gradient checkpointing, answer-only logits, feature cache (epoch 2 from the
           cache), eager vs sdpa attention, DataLoader workers. Every run trains two epochs of
           the same data, so the default run is also the feature cache's "off" side.
  infer    bench_infer's sequential generate loop vs `pefomed infer --batch-size auto` on 256
           VQA-RAD-sized images (512 px; --smoke: 16 of 128 px) with one closed question, greedy:
           samples/s of both (model load included), the ratio, answers equal, the batch size
           auto chose (probed on CUDA only) and the sizes it tried.
  e2e      the installed `pefomed` console script on the bundled demo images: prepare -> train
           (a few steps, ZeRO-2, bf16 on CUDA) -> infer -> score -> export --merge, then the export
           loaded with transformers' AutoModelForImageTextToText and one generate call.

DIR/gpu_check.json and DIR/gpu_check.md hold the device, the versions (python, torch,
transformers, peft, deepspeed, bitsandbytes, accelerate, pefomed; liger_kernel probed), every
step's status, wall time and budget, its figures and ratios, each failure's last lines, and (GPU
only) the issue's targets against what was measured. Both are rewritten atomically before and
after every step, so a run killed midway still leaves the steps it finished. DIR/logs/STEP.log
holds each step's full output (install.log also the version probe's): 7 files, inside the 8
that the device tool brings back from $OUT. Models, data and runs go to a work folder (--work; default a
temporary folder, /dev/shm on a GPU machine when it has room: the 7B model is read back by every
run) that is removed at the end unless --keep-work.

Time: the GPU budgets below (plus the version probe) add up to 535 s, inside the issue's 9 minutes
on an H100; the device tool's timeout_s 570 leaves room around them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS = ("install", "build", "train", "infer", "e2e")
# Each step's time box in seconds. GPU (an H100, the 7b size; estimates, nothing has run there
# yet): installing ~16 wheels (~50 MB); building and writing 15.5 GB of random bf16 weights; train's
# up to 9 runs of ~20-30 s each (imports, loading the 7B model, 10 steps), in priority order so a
# cut run is the least needed; infer's 256 one-by-one generate calls (~0.2 s each) plus writing the
# images (~9 s of PNG encoding), the auto probe and the batched run; e2e's six commands on the small model, ~8 s each.
# With the version probe: 30 + 25 + 70 + 225 + 115 + 70 = 535 s, inside the 9 minutes (540 s).
# Smoke (2 CPU cores): generous caps; the smoke run takes about 2 minutes in all.
BUDGETS = {
    "gpu": {"install": 30, "build": 70, "train": 225, "infer": 115, "e2e": 70},
    "smoke": {"install": 30, "build": 60, "train": 240, "infer": 90, "e2e": 150},
}
PROBE_BUDGET_S = 25  # the version probe, run after the install step (fresh interpreter: what got installed)
TOTAL_S = {"gpu": 540, "smoke": 640}  # the whole run: a step gets at most what is left of this
RUN_TIMEOUT_S = {"gpu": 60, "smoke": 60}  # one training measurement (its own subprocess)
SETTINGS = {
    # steps_per_epoch x 2 epochs; warmup steps left out of the timing; qlora_batch: the issue's
    # "micro-batch 4 with gradient checkpointing" for the QLoRA target
    "gpu": {"size": "7b", "precision": "bf16", "batch_size": 8, "steps_per_epoch": 5, "warmup": 2,
            "qlora_batch": 4, "infer_n": 256, "infer_image_px": 512, "infer_batch": 16, "max_new_tokens": 8,
            "e2e_size": "llava-mini", "e2e_steps": 4},
    "smoke": {"size": "llava-mini", "precision": "fp32", "batch_size": 4, "steps_per_epoch": 3, "warmup": 1,
              "qlora_batch": 4, "infer_n": 16, "infer_image_px": 128, "infer_batch": 8, "max_new_tokens": 8,
              "e2e_size": "llava-mini", "e2e_steps": 2},
}
CHECKPOINTING = ["train.gradient_checkpointing=true"]
# The targets, judged on a GPU run only: (text, path into the figures, comparison, value).
TARGETS = [
    ("pefomed samples/s >= 1.3x Trainer + peft", ("train", "ratio_samples_per_s"), ">=", 1.3),
    ("pefomed peak memory <= Trainer + peft's", ("train", "ratio_peak_memory"), "<=", 1.0),
    ("MFU >= 45% (pefomed, defaults)", ("train", "pefomed", "mfu"), ">=", 0.45),
    ("QLoRA 7B peak < 16 GB (10^9 B) at micro-batch 4 with gradient checkpointing",
     ("train", "levers", "qlora", "on", "peak_memory_gb"), "<", 16.0),
    ("data wait < 2% of the step (train.num_workers=2)", ("train", "levers", "workers", "on", "data_wait_fraction"),
     "<", 0.02),
    ("feature cache: epoch 2 >= 20% faster (median step cached / uncached <= 0.8)",
     ("train", "levers", "feature_cache", "ratio_epoch2_median_step"), "<=", 0.8),
    ("infer >= 5x the sequential generate loop's samples/s", ("infer", "ratio_samples_per_s"), ">=", 5.0),
]


# ---------------------------------------------------------------- files

def _atomic_write(path: Path, text: str) -> None:
    """Write next to the target, then rename over it: a reader (or a kill) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return _tail(path.read_text(encoding="utf-8", errors="replace"), lines)
    except OSError:
        return ""


# ---------------------------------------------------------------- inside a step's subprocess

class Step:
    """A step's record, saved (atomically) after each piece so a step killed at its time box still
    leaves what it measured: figures (numbers only), details (anything else), errors (per piece)."""

    def __init__(self, name: str, args):
        self.name, self.args = name, args
        self.mode = "smoke" if args.smoke else "gpu"
        self.settings = SETTINGS[self.mode]
        self.work = Path(args.work)
        self.file = self.work / "steps" / f"{name}.json"
        self.deadline = time.monotonic() + args.step_budget
        self.data = {"figures": {}, "details": {}, "errors": {}, "skipped": None, "error": None}

    @property
    def figures(self) -> dict:
        return self.data["figures"]

    @property
    def details(self) -> dict:
        return self.data["details"]

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        _atomic_write(self.file, json.dumps(self.data, indent=1, default=str))

    def skip(self, reason: str) -> None:
        self.data["skipped"] = reason
        self.save()
        print(f"skipped: {reason}", flush=True)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _model(step: Step, size: str | None = None) -> tuple[dict, dict]:
    """The build step's (spec, built) for `size` (default: the run's size)."""
    size = size or step.settings["size"]
    record = step.work / f"model-{size}.json"
    if not record.is_file():
        raise RuntimeError(f"no {size} model: the build step did not finish (see its entry)")
    saved = json.loads(record.read_text())
    return saved["spec"], saved["built"]


def build_model(step: Step, size: str, steps_per_epoch: int, batch_size: int, timeout: float) -> tuple[dict, dict]:
    import bench_train as bt

    s = step.settings
    # two epochs of the same samples: the second is the feature cache's measurement
    spec = bt.make_spec(size, step.work, steps=2 * steps_per_epoch, warmup=s["warmup"], batch_size=batch_size,
                        precision=s["precision"], zero="zero2", n_train=steps_per_epoch * batch_size)
    # its own process (bench_train's worker): the GPU memory of the build is released before anything is measured
    built = bt._run_worker("build", spec, timeout=timeout)
    _atomic_write(step.work / f"model-{size}.json", json.dumps({"spec": spec, "built": built}))
    return spec, built


def step_install(step: Step) -> None:
    """pip install --no-index --no-deps from the carried folder: what the box lacks, nothing else."""
    if step.args.smoke:
        return step.skip("--smoke: the environment running this script is used as it is")
    folder = Path(step.args.wheels)
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if not wheels:
        return step.skip(f"{folder}: no wheel folder (build it with `python tools/gpu_wheels.py --out {folder}` "
                         f"and carry it)")
    import tomllib
    import zipfile
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    by_name = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in wheels}
    # what must hold: pefomed's own requirements and every carried wheel's (each wheel's METADATA)
    requirements = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
                    ["dependencies"]]
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            lines = archive.read(meta).decode("utf-8", errors="replace").splitlines()
        requirements += [Requirement(line.split(":", 1)[1].strip()) for line in lines
                         if line.startswith("Requires-Dist:")]
    requirements = [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]
    chosen, kept = [], {}
    for name, wheel in by_name.items():
        if name == "pefomed":
            continue  # below: from the checkout that travelled
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        wrong = [str(r) for r in requirements if canonicalize_name(r.name) == name and have is not None
                 and not r.specifier.contains(have, prereleases=True)]
        if have is None or wrong:
            chosen.append(wheel)
        else:
            kept[name] = have
    step.details.update(kept_from_the_box=kept, installed=[w.name for w in chosen])
    step.save()
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--find-links", str(folder)]
    if chosen:
        started = time.perf_counter()
        subprocess.run(pip + [str(w) for w in chosen], check=True, timeout=max(step.left() - 20, 5))
        step.figures["wheels_seconds"] = time.perf_counter() - started
        step.figures["wheels_installed"] = len(chosen)
    # pefomed: the checkout itself (what travelled is what gets measured), its wheel if that fails
    started = time.perf_counter()
    editable = subprocess.run(pip + ["--no-build-isolation", "-e", str(REPO)], capture_output=True, text=True,
                              timeout=max(step.left() - 10, 5))
    if editable.returncode == 0:
        step.details["pefomed"] = "pip install -e . (the checkout)"
    elif "pefomed" in by_name:
        print(editable.stdout + editable.stderr, flush=True)
        subprocess.run(pip + [str(by_name["pefomed"])], check=True, timeout=max(step.left() - 5, 5))
        step.details["pefomed"] = f"{by_name['pefomed'].name} (`-e .` failed: {_tail(editable.stderr, 3)})"
    else:
        raise RuntimeError(f"pip install -e . failed and no pefomed wheel was carried:\n{_tail(editable.stderr)}")
    step.figures["pefomed_seconds"] = time.perf_counter() - started
    # what the box still lacks or holds in another version: a lead, not a failure
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=60)
    step.details["pip_check"] = _tail(check.stdout + check.stderr, 30) or "no broken requirements"
    step.save()


def step_build(step: Step) -> None:
    s = step.settings
    if s["size"] == "7b" and not _cuda():
        raise RuntimeError("the 7b size needs a CUDA GPU (no CUDA device is visible); use --smoke on a CPU")
    started = time.perf_counter()
    spec, built = build_model(step, s["size"], s["steps_per_epoch"], s["batch_size"], timeout=max(step.left() - 5, 5))
    p = built["params"]
    step.figures.update(seconds=time.perf_counter() - started, params_total_m=p["total"] / 1e6,
                        params_vision_m=p["vision"] / 1e6, params_llm_m=(p["llm_layers"] + p["lm_head"] + p["embed"]) / 1e6,
                        tokens_per_sample=built["data"]["tokens_per_sample"],
                        model_folder_gb=sum(f.stat().st_size for f in Path(spec["model_dir"]).rglob("*")
                                            if f.is_file()) / 1e9)
    step.details.update(size=s["size"], model_dir=spec["model_dir"], precision=s["precision"])
    step.save()


def _levers(bt, s: dict) -> list[tuple[str, str, list, list, int]]:
    """(lever, title, overrides on, overrides off, micro-batch), in the order they are measured: the
    issue's targets first, so a train step cut at its time box loses the least needed."""
    bs = s["batch_size"]
    return [
        ("qlora", "method.quantize=4bit (micro-batch 4, gradient checkpointing both sides)",
         [*bt.LEVERS["qlora"]["on"], *CHECKPOINTING], list(CHECKPOINTING), s["qlora_batch"]),
        ("feature_cache", "train.feature_cache (epoch 2 read from the cache)", ["train.feature_cache=true"], [], bs),
        ("workers", bt.LEVERS["workers"]["title"], bt.LEVERS["workers"]["on"], bt.LEVERS["workers"]["off"], bs),
        ("checkpointing", bt.LEVERS["checkpointing"]["title"], bt.LEVERS["checkpointing"]["on"],
         bt.LEVERS["checkpointing"]["off"], bs),
        ("answer_only", bt.LEVERS["answer_only"]["title"], bt.LEVERS["answer_only"]["on"],
         bt.LEVERS["answer_only"]["off"], bs),
        ("attention", "model.attn_implementation sdpa (on, the default) vs eager", [],
         ["model.attn_implementation=eager"], bs),
        ("liger", "train.loss_kernel=liger (fused linear cross-entropy) vs torch", ["train.loss_kernel=liger"], [], bs),
    ]


def step_train(step: Step) -> None:
    import contextlib
    import io
    import statistics

    import bench_train as bt

    s = step.settings
    spec, built = _model(step)
    peak, peak_text = bt._peak_tflops(None)
    step.details.update(mfu_peak=peak_text, size=spec["size"], precision=spec["precision"],
                        batch_size=spec["batch_size"], steps=spec["steps"], warmup=spec["warmup"],
                        steps_per_epoch=s["steps_per_epoch"], deepspeed=spec["zero"],
                        lora=bt.METHOD.get(spec["size"], ["the tiny-demo recipe's r=16, alpha=32"]))
    spe = s["steps_per_epoch"]

    def measure(kind: str, label: str, overrides: list, batch: int) -> dict | None:
        """One bench_train worker; its figures, or None with the error recorded under `label`."""
        worker_spec = {**spec, "label": label, "overrides": list(overrides), "batch_size": batch}
        captured = io.StringIO()  # _run_worker writes a failed worker's output to stderr
        try:
            with contextlib.redirect_stderr(captured):
                raw = bt._run_worker(kind, worker_spec, timeout=max(min(RUN_TIMEOUT_S[step.mode], step.left() - 3), 5))
        except SystemExit as failed:
            sys.stderr.write(captured.getvalue())
            step.data["errors"][label] = f"{failed}\n{_tail(captured.getvalue())}"
            step.save()
            return None
        finally:
            # the run's checkpoint holds the trainable weights and AdamW state (~0.8 GB at 7b): free the room
            shutil.rmtree(Path(spec["work"]) / f"run-{spec['size']}-{label}", ignore_errors=True)
        sys.stderr.write(captured.getvalue())
        out = bt._summarise(spec["size"], built, raw, peak)
        figures = {key: out[key] for key in ("samples_per_s", "tokens_per_s", "peak_memory_mb", "model_tflops_per_s",
                                             "seconds")}
        figures["peak_memory_gb"] = out["peak_memory_mb"] * 2**20 / 1e9
        if out["mfu"] is not None:
            figures["mfu"] = out["mfu"]
        if "data_wait_s" in raw:  # pefomed's own log: the share of the timed steps spent waiting for a batch
            figures["data_wait_fraction"] = raw["data_wait_s"] / raw["elapsed_s"]
            figures["epoch2_median_step_s"] = statistics.median(raw["step_seconds"][spe:])
            step.details.setdefault("feature_cache_hits", {})[label] = raw["feature_cache_hits"]
        print(f"{label}: {figures}", flush=True)
        return figures

    default = measure("pefomed", "default", [], spec["batch_size"])
    if default:
        step.figures["pefomed"] = default
    trainer = measure("baseline", "trainer-peft", [], spec["batch_size"])
    if trainer:
        step.figures["trainer_peft"] = trainer
    if default and trainer:
        step.figures["ratio_samples_per_s"] = default["samples_per_s"] / trainer["samples_per_s"]
        step.figures["ratio_peak_memory"] = default["peak_memory_mb"] / trainer["peak_memory_mb"]
    step.save()

    runs = {((), spec["batch_size"]): default}
    for lever, title, on, off, batch in _levers(bt, s):
        if lever == "qlora":
            try:
                import bitsandbytes  # noqa: F401  (QLoRA needs it to import, not just to be installed)
            except Exception as err:  # ImportError, or a CUDA library it cannot load
                step.details.setdefault("levers_skipped", {})[lever] = f"bitsandbytes does not import: {err}"
                step.save()
                continue
        if lever == "liger":
            import torch

            try:
                import liger_kernel.transformers  # noqa: F401
            except Exception as err:
                step.details.setdefault("levers_skipped", {})[lever] = f"liger-kernel does not import: {err}"
                step.save()
                continue
            if not torch.cuda.is_available():  # a Triton CUDA kernel: train refuses it here (the smoke run)
                step.details.setdefault("levers_skipped", {})[lever] = "liger-kernel needs CUDA"
                step.save()
                continue
        sides = {}
        for side, overrides in (("on", on), ("off", off)):
            key = (tuple(overrides), batch)
            if key not in runs:
                runs[key] = measure("pefomed", f"{lever}-{side}", overrides, batch)
            sides[side] = runs[key]
        if not (sides["on"] and sides["off"]):
            continue  # the failed side's error is recorded
        entry = {"on": sides["on"], "off": sides["off"],
                 "ratio_samples_per_s": sides["on"]["samples_per_s"] / sides["off"]["samples_per_s"],
                 "ratio_peak_memory": sides["on"]["peak_memory_mb"] / sides["off"]["peak_memory_mb"]}
        if lever == "feature_cache":
            entry["ratio_epoch2_median_step"] = (sides["on"]["epoch2_median_step_s"]
                                                 / sides["off"]["epoch2_median_step_s"])
        step.figures.setdefault("levers", {})[lever] = entry
        step.details.setdefault("lever_titles", {})[lever] = title
        step.save()
    if step.data["errors"]:
        raise RuntimeError(f"{len(step.data['errors'])} measurement(s) failed: {', '.join(step.data['errors'])}")


def step_infer(step: Step) -> None:
    import gc

    import bench_infer as bi
    import torch

    from pefomed.records import settings_path

    s = step.settings
    spec, _ = _model(step)
    folder = step.work / "infer-images"
    shutil.rmtree(folder, ignore_errors=True)
    paths = bi.make_images(folder, s["infer_n"], s["infer_image_px"])
    # the source is a recipe naming the model folder, so both sides load it in the run's precision
    # (a bare model folder loads in the recipe default, fp32)
    source = step.work / "infer-source.yaml"
    source.write_text(json.dumps({"model": {"kind": "hf", "name_or_path": spec["model_dir"]},
                                  "train": {"precision": spec["precision"]},
                                  "infer": {"batch_size": s["infer_batch"], "max_new_tokens": s["max_new_tokens"]}}))
    n = len(paths)
    step.details.update(samples=n, image_px=s["infer_image_px"], question=bi.QUESTION,
                        max_new_tokens=s["max_new_tokens"], model=spec["size"])
    t_loop, loop = bi.baseline(str(source), folder, paths, s["max_new_tokens"])
    step.figures.update(loop_seconds=t_loop, loop_samples_per_s=n / t_loop)
    step.save()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the loop's model: its memory back before the auto probe measures what fits
    pred = step.work / "infer-pred.jsonl"
    t_ours, ours = bi.pefomed_infer(str(source), folder, pred, "auto", s["max_new_tokens"])
    generation = json.loads(settings_path(pred).read_text())["generation"]
    auto = generation.get("batch_size_auto", {})
    step.figures.update(pefomed_seconds=t_ours, pefomed_samples_per_s=n / t_ours, ratio_samples_per_s=t_loop / t_ours,
                        batch_size=generation["batch_size"],
                        answers_equal=sum(ours.get(k) == v for k, v in loop.items()))
    step.details.update(batch_size_auto=auto if auto.get("tried") else
                        f"not probed ({auto.get('device', '?')}: probing is CUDA only); the recipe's "
                        f"infer.batch_size {generation['batch_size']}",
                        answers_differing=[k for k, v in loop.items() if ours.get(k) != v][:5])
    step.save()


def _run_command(step: Step, label: str, cmd: list[str]) -> None:
    started = time.perf_counter()
    print(f"$ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(step.left() - 3, 5), cwd=step.work)
    sys.stdout.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} exited {proc.returncode}:\n{_tail(proc.stdout + proc.stderr)}")
    step.figures.setdefault("seconds", {})[label] = time.perf_counter() - started
    step.save()


def load_and_generate(folder: Path, image: Path, max_new_tokens: int) -> dict:
    """The export as a user loads it: plain transformers, no pefomed import."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype="auto").to(device).eval()
    processor = AutoProcessor.from_pretrained(folder)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there an abnormality?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = processor(images=[Image.open(image).convert("RGB")], text=prompt, return_tensors="pt")
    dtype = next(p for p in model.parameters() if torch.is_floating_point(p)).dtype
    enc = {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device)) for k, v in enc.items()}
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, enc["input_ids"].shape[1]:]
    return {"class": type(model).__name__, "dtype": str(dtype), "device": device, "new_tokens": int(new.numel()),
            "text": processor.tokenizer.decode(new, skip_special_tokens=True)}


def step_e2e(step: Step) -> None:
    import importlib

    from pefomed.demo import demo_source

    s = step.settings
    exe = Path(sys.executable).with_name("pefomed")  # the console script pip installed beside this python
    if not exe.exists():
        exe = Path(shutil.which("pefomed") or "pefomed")
    step.details["cli"] = str(exe)
    try:
        importlib.import_module("deepspeed")  # `pefomed train` runs on DeepSpeed: without it there is no chain
        step.details["deepspeed"] = "imports: ZeRO-2"
    except Exception as err:
        raise RuntimeError(f"deepspeed does not import ({err}); pefomed train needs it") from None
    size = step.args.e2e_size or s["e2e_size"]
    started = time.perf_counter()
    if (step.work / f"model-{size}.json").is_file():
        spec, _ = _model(step, size)
    else:  # the GPU run's e2e uses the small model: a 7B export --merge (15 GB written twice) overruns the box
        spec, _ = build_model(step, size, 2, 4, timeout=max(step.left() - 30, 5))
        step.figures.setdefault("seconds", {})["build_model"] = time.perf_counter() - started
    precision = "bf16" if _cuda() else "fp32"  # bf16 on CUDA; a GPU run that found no GPU still checks the chain
    step.details.update(model=size, precision=precision)
    root = step.work / "e2e"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    data, run, pred, metrics, export = (root / "data", root / "run", root / "pred.jsonl", root / "metrics.json",
                                        root / "export")
    overrides = ["model.kind=hf", f"model.name_or_path={spec['model_dir']}", f"train.max_steps={s['e2e_steps']}",
                 "train.batch_size=4", f"train.precision={precision}", "train.deepspeed=zero2",
                 "train.tensorboard=false", "data.max_length=512", f"infer.max_new_tokens={s['max_new_tokens']}"]
    commands = [("prepare", [str(exe), "prepare", str(demo_source()), "--format", "data-rad", "--out", str(data)]),
                ("train", [str(exe), "train", "tiny-demo", "--data", str(data), "--out", str(run), *overrides]),
                ("infer", [str(exe), "infer", str(run), "--data", str(data), "--split", "test", "--out", str(pred)]),
                ("score", [str(exe), "score", str(pred), "--out", str(metrics)]),
                ("export", [str(exe), "export", str(run), "--merge", "--out", str(export)])]
    for label, cmd in commands:
        _run_command(step, label, cmd)
    overall = json.loads(metrics.read_text())["vqa"]["overall"]
    step.figures["predictions"] = sum(1 for _ in pred.open(encoding="utf-8"))
    step.details["vqa_accuracy"] = {k: overall[k] for k in ("value", "ci_low", "ci_high", "n") if k in overall}
    step.figures["export_mb"] = sum(f.stat().st_size for f in export.rglob("*") if f.is_file()) / 2**20
    started = time.perf_counter()
    image = next(p for p in sorted((data / "images").rglob("*")) if p.is_file())
    step.details["export_generate"] = load_and_generate(export, image, s["max_new_tokens"])
    step.figures["seconds"]["load_export_and_generate"] = time.perf_counter() - started
    step.save()


STEP_FUNCTIONS = {"install": step_install, "build": step_build, "train": step_train, "infer": step_infer,
                  "e2e": step_e2e}


def run_step(args) -> int:
    step = Step(args.run_step, args)
    step.save()
    try:
        if args.run_step in args.fail_step:  # for tests: proves a failing step is recorded and the rest go on
            raise RuntimeError(f"forced failure of step {args.run_step} (--fail-step)")
        STEP_FUNCTIONS[args.run_step](step)
    except BaseException as err:  # noqa: BLE001  (KeyboardInterrupt and SystemExit too: all recorded)
        traceback.print_exc()
        step.data["error"] = f"{type(err).__name__}: {err}\n{_tail(traceback.format_exc(), 12)}"
        step.save()
        return 1
    step.save()
    return 0


def probe_versions(smoke: bool) -> dict:
    """Versions of what the check runs on (installed metadata; 'import failed' where it does not import)."""
    import importlib
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for module, dist in (("torch", "torch"), ("transformers", "transformers"), ("peft", "peft"),
                         ("deepspeed", "deepspeed"), ("bitsandbytes", "bitsandbytes"), ("accelerate", "accelerate"),
                         ("pefomed", "pefomed"), ("liger_kernel", "liger-kernel")):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[module] = "not installed"
            continue
        try:
            importlib.import_module(module)
            versions[module] = version
        except Exception as err:  # a broken install says why, not only that it is there
            versions[module] = f"{version} (import failed: {type(err).__name__}: {str(err)[:200]})"
    import torch

    versions["cuda"] = torch.version.cuda or "none (CPU build)"
    if smoke:
        device = f"CPU (smoke), {os.cpu_count()} cores"
    elif torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        device = f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability {props.major}.{props.minor}"
    else:
        device = "CPU (no CUDA device found)"
    return {"device": device, "versions": versions}


# ---------------------------------------------------------------- the parent: orchestration and report

class Runner:
    def __init__(self, args):
        self.args = args
        self.mode = "smoke" if args.smoke else "gpu"
        self.out = Path(args.out)
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work) if args.work else self._default_work()
        self.work.mkdir(parents=True, exist_ok=True)
        self.child: subprocess.Popen | None = None
        self.started = time.monotonic()
        budgets = dict(BUDGETS[self.mode], **dict(args.budget))
        self.report = {
            "mode": self.mode, "size": SETTINGS[self.mode]["size"],
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "device": None, "versions": None, "total_budget_s": TOTAL_S[self.mode], "wall_s": 0.0,
            "steps": {name: {"status": "pending" if name in args.steps else "not selected (--steps)",
                             "budget_s": budgets[name]} for name in STEPS},
            "targets": [],
        }

    def _default_work(self) -> Path:
        shm = Path("/dev/shm")
        # the 7B model (15.5 GB) is read back by every run: from memory rather than a disk of unknown speed
        if self.mode == "gpu" and shm.is_dir() and shutil.disk_usage(shm).free > 40e9:
            return Path(tempfile.mkdtemp(prefix="gpu-check-", dir=shm))
        return Path(tempfile.mkdtemp(prefix="gpu-check-"))

    def write(self) -> None:
        self.report["wall_s"] = time.monotonic() - self.started
        self.report["targets"] = judge(self.report) if self.mode == "gpu" else []
        _atomic_write(self.out / "gpu_check.json", json.dumps(self.report, indent=2, default=str) + "\n")
        _atomic_write(self.out / "gpu_check.md", markdown(self.report))

    def _env(self) -> dict:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1",
                   TOKENIZERS_PARALLELISM="false")
        if self.mode == "smoke":
            env["CUDA_VISIBLE_DEVICES"] = ""  # the smoke run is the CPU path, even on a GPU machine
            # one thread: on a shared CPU, OpenMP threads waiting for a core another job holds slow a
            # toy model's step many-fold (docs/benchmarks.md); the smoke run checks the script, not speed
            env["OMP_NUM_THREADS"] = "1"
        return env

    def _spawn(self, argv: list[str], log: Path, budget: float) -> tuple[int | None, float]:
        """Run argv in its own process group under `budget` seconds; (exit code or None if killed, wall s)."""
        started = time.monotonic()
        with log.open("a", encoding="utf-8") as handle:
            self.child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv], cwd=REPO,
                                          env=self._env(), stdout=handle, stderr=subprocess.STDOUT,
                                          start_new_session=True)
            try:
                code = self.child.wait(timeout=budget)
            except subprocess.TimeoutExpired:
                self.kill_child()
                code = None
            self.child = None
        return code, time.monotonic() - started

    def kill_child(self) -> None:
        """The step and everything it started (training workers, DataLoader workers): its process group."""
        child = self.child
        if child is None or child.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                return
            try:
                child.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def left(self) -> float:
        return TOTAL_S[self.mode] - (time.monotonic() - self.started)

    def common_args(self) -> list[str]:
        argv = ["--out", str(self.out), "--work", str(self.work), "--wheels", self.args.wheels]
        if self.args.smoke:
            argv.append("--smoke")
        if self.args.e2e_size:
            argv += ["--e2e-size", self.args.e2e_size]
        for name in self.args.fail_step:
            argv += ["--fail-step", name]
        return argv

    def probe(self) -> None:
        log = self.out / "logs" / "install.log"  # one file fewer to bring back from the device machine
        result = self.work / "versions.json"
        code, _ = self._spawn(["--probe", str(result), *self.common_args()], log, min(PROBE_BUDGET_S, max(self.left(), 1)))
        if code == 0 and result.is_file():
            self.report.update(json.loads(result.read_text()))
        else:
            self.report["versions"] = {"error": ("timed out" if code is None else f"exit {code}") + "\n" + _log_tail(log)}
            self.report["device"] = "unknown (the version probe failed)"
        self.write()

    def run(self) -> int:
        self.write()
        for name in STEPS:
            entry = self.report["steps"][name]
            if name not in self.args.steps:
                if name == "install":
                    self.probe()
                continue
            left = self.left() - (PROBE_BUDGET_S if name == "install" else 0)
            if left < 5:
                entry.update(status="skipped", reason=f"no time left in the {TOTAL_S[self.mode]} s box")
                self.write()
                continue
            budget = min(entry["budget_s"], left)
            entry.update(status="running", budget_s=round(budget, 1))
            self.write()
            log = self.out / "logs" / f"{name}.log"
            log.write_text("")
            code, wall = self._spawn(["--run-step", name, "--step-budget", str(budget), *self.common_args()], log, budget)
            record = self.work / "steps" / f"{name}.json"
            data = json.loads(record.read_text()) if record.is_file() else {}
            entry.update(wall_s=round(wall, 2), figures=data.get("figures", {}), details=data.get("details", {}))
            if data.get("errors"):
                entry["errors"] = data["errors"]
            if code is None:
                entry.update(status="timeout", error=f"killed at its {budget:.0f} s time box; last lines:\n"
                                                     + _log_tail(log))
            elif code == 0 and data.get("skipped"):
                entry.update(status="skipped", reason=data["skipped"])
            elif code == 0:
                entry["status"] = "passed"
            else:
                # the log's end too: a worker's traceback is there, not in the step's own exception
                entry.update(status="failed", error=(data.get("error") or f"exit {code}")
                             + f"\n--- last lines of logs/{name}.log ---\n" + _log_tail(log, 15))
            self.write()
            print(f"{name}: {entry['status']} in {wall:.1f} s", flush=True)
            if name == "install":  # a fresh interpreter after the install: the versions the steps run on
                self.probe()
        self.write()
        return 0

    def close(self) -> None:
        self.kill_child()
        if not self.args.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)


def _lookup(figures: dict, path: tuple) -> float | None:
    value = figures
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) else None


def judge(report: dict) -> list[dict]:
    figures = {name: entry.get("figures", {}) for name, entry in report["steps"].items()}
    out = []
    for text, path, op, goal in TARGETS:
        value = _lookup(figures, path)
        met = None if value is None else {">=": value >= goal, "<=": value <= goal, "<": value < goal}[op]
        out.append({"target": text, "figure": ".".join(path), "measured": value, "goal": f"{op} {goal}", "met": met})
    return out


def _flatten(figures: dict, prefix: str = "") -> list[tuple[str, float]]:
    rows = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, name + ".")
        else:
            rows.append((name, value))
    return rows


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) >= 100):
        return f"{value:,.0f}"
    return f"{value:.4g}"


def markdown(report: dict) -> str:
    lines = ["# pefomed GPU check", "",
             f"- device: {report['device'] or 'not probed yet'}",
             f"- mode: {report['mode']} (size `{report['size']}`)",
             f"- command: `{report['command']}`",
             f"- started: {report['started']}; wall {report['wall_s']:.1f} s of a {report['total_budget_s']} s box", ""]
    versions = report.get("versions") or {}
    if versions:
        lines += ["| " + " | ".join(versions) + " |", "|" + "---|" * len(versions),
                  "| " + " | ".join(str(v).replace("\n", " ") for v in versions.values()) + " |", ""]
    lines += ["## Steps", "", "| step | status | wall s | budget s |", "|---|---|---|---|"]
    for name, entry in report["steps"].items():
        lines.append(f"| {name} | {entry['status']} | {_number(entry['wall_s']) if 'wall_s' in entry else ''} | "
                     f"{_number(entry['budget_s'])} |")
    lines.append("")
    if report["mode"] == "gpu":
        lines += ["## Targets (issue 24)", "", "| target | measured | goal | met |", "|---|---|---|---|"]
        for t in report["targets"]:
            met = "not measured" if t["met"] is None else ("yes" if t["met"] else "no")
            lines.append(f"| {t['target']} | {_number(t['measured']) if t['measured'] is not None else '-'} | "
                         f"{t['goal']} | {met} |")
        lines.append("")
    else:
        lines += ["Targets: not judged (a smoke run on a CPU with a toy model checks the script, not the speed).", ""]
    for name, entry in report["steps"].items():
        if "figures" not in entry and "error" not in entry and "reason" not in entry:
            continue
        lines += [f"## {name}: {entry['status']}", ""]
        if entry.get("reason"):
            lines += [f"Reason: {entry['reason']}", ""]
        rows = _flatten(entry.get("figures", {}))
        if rows:
            lines += ["| figure | value |", "|---|---|"] + [f"| {k} | {_number(v)} |" for k, v in rows] + [""]
        for key, value in (entry.get("details") or {}).items():
            lines.append(f"- {key}: {json.dumps(value, default=str) if not isinstance(value, str) else value}")
        if entry.get("details"):
            lines.append("")
        for label, text in (entry.get("errors") or {}).items():
            lines += [f"Error in {label}:", "", "```", text.strip(), "```", ""]
        if entry.get("error"):
            lines += ["Error:", "", "```", entry["error"].strip(), "```", ""]
    return "\n".join(lines) + "\n"


def _budget(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    if name not in STEPS or not seconds:
        raise argparse.ArgumentTypeError(f"--budget takes STEP=SECONDS with STEP one of {', '.join(STEPS)}")
    return name, float(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Steps: " + ", ".join(STEPS) + " (see the module docstring)")
    parser.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and logs/")
    parser.add_argument("--smoke", action="store_true", help="the llava-mini size on the CPU (checks the script)")
    parser.add_argument("--wheels", default="wheels/gpu", help="the carried wheel folder (tools/gpu_wheels.py)")
    parser.add_argument("--work", default=None, help="models, data and runs (default: a temporary folder)")
    parser.add_argument("--keep-work", action="store_true", help="keep the work folder at the end")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="run only these steps")
    parser.add_argument("--e2e-size", choices=["llava-mini", "7b"], default=None,
                        help="model of the e2e step (default llava-mini: a 7b export does not fit the time box)")
    parser.add_argument("--budget", type=_budget, action="append", default=[],
                        help="STEP=SECONDS: another time box for a step (tests, slower machines)")
    parser.add_argument("--fail-step", action="append", default=[], choices=STEPS,
                        help="make this step fail at its start (tests the recording of failures)")
    parser.add_argument("--run-step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--step-budget", type=float, default=600.0, help=argparse.SUPPRESS)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_step:
        sys.path.insert(0, str(HERE))  # bench_train, bench_infer
        return run_step(args)
    if args.probe:
        _atomic_write(Path(args.probe), json.dumps(probe_versions(args.smoke)))
        return 0

    runner = Runner(args)

    def stop(signum, _frame):  # the device tool's time limit, or Ctrl-C: no step may outlive this process
        runner.kill_child()
        for entry in runner.report["steps"].values():
            if entry["status"] == "running":
                entry.update(status="killed", error=f"this script got signal {signum} during the step")
        runner.write()
        runner.close()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        code = runner.run()
    finally:
        runner.close()
    summary = ", ".join(f"{n} {e['status']}" for n, e in runner.report["steps"].items())
    print(f"gpu_check: {summary}; {runner.report['wall_s']:.0f} s; {runner.out / 'gpu_check.md'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
