"""Answer-only logits (train.answer_only_logits) against full logits, measured in the same invocation.

The LM head's output is batch x positions x vocabulary floats, and with Gemma 3's 262,144-token
vocabulary it dominates a VLM step's activations; the loss needs it only at the few positions
that predict an answer token. Each setting runs in its own fresh process (so the peak memory of
one cannot hide the other's) on the same model and batches: a Gemma 3-shaped model built in code
with the real vocabulary size and a small body (random weights), LoRA on q_proj/v_proj plus the
projector as pefomed trains it, and micro-batches of `--seq` tokens whose last `--answer` tokens
(at a different offset in each row, as real prompts differ in length) are the answer. A step is
`pefomed.train.loss.micro_batch_loss_sum` + backward, the loop's own code path.

Reported per setting: median step seconds, peak memory of the step above the loaded model (CUDA:
torch.cuda.max_memory_allocated; CPU: the process's resident set, sampled every millisecond), and the ratios
answer-only / full.

Usage:
  python benchmarks/bench_answer_logits.py                        # seq 320, answer 4, batch 2
  python benchmarks/bench_answer_logits.py --seq 1024 --answer 100 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def build_model(vocab: int, hidden: int, layers: int):
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    config = Gemma3Config(
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=32, patch_size=8, vision_use_head=False),
        text_config=Gemma3TextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 4,
                                     num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                     head_dim=hidden // 4, query_pre_attn_scalar=hidden // 4,
                                     sliding_window=4096, max_position_embeddings=8192,
                                     pad_token_id=0, bos_token_id=2, eos_token_id=1),
        mm_tokens_per_image=4, boi_token_index=vocab - 3, eoi_token_index=vocab - 2, image_token_index=vocab - 1)
    torch.manual_seed(0)
    return Gemma3ForConditionalGeneration(config)


def batches(n: int, batch: int, seq: int, answer: int, vocab: int):
    import torch

    gen = torch.Generator().manual_seed(1)
    for _ in range(n):
        ids = torch.randint(3, vocab - 3, (batch, seq), generator=gen)
        labels = torch.full_like(ids, -100)
        for row in range(batch):
            end = seq - 3 * row  # rows end at different places; padding after
            labels[row, end - answer:end] = ids[row, end - answer:end]
            ids[row, end:] = 0
        yield {"input_ids": ids, "attention_mask": (ids != 0).long()}, labels


class RssPeak:
    """Peak resident memory of this process above its level at start, sampled every millisecond
    (torch's kernels release the GIL, so the sampler runs during them). ru_maxrss cannot serve:
    it keeps the peak of building the model, which can exceed a whole step's."""

    def __init__(self):
        import os
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._rss()) - self.start


def child(args) -> dict:
    import torch

    from pefomed.models.peft_methods import apply_method
    from pefomed.recipe import MethodSection
    from pefomed.train.loss import micro_batch_loss_sum

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = apply_method(build_model(args.vocab, args.hidden, args.layers),
                         MethodSection(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    model.to(device).train()
    answer_only = args.mode == "answer_only"
    data = list(batches(args.steps + 1, args.batch, args.seq, args.answer, args.vocab))
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        sampler = RssPeak()
    times = []
    for i, (batch, labels) in enumerate(data):
        batch = {k: v.to(device) for k, v in batch.items()}
        start = time.perf_counter()
        loss = micro_batch_loss_sum(model, batch, labels, answer_only=answer_only)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = sampler.stop()
    return {"mode": args.mode, "device": device, "step_s": statistics.median(times),
            "step_peak_mb": round(peak / 2**20, 1), "loss_last": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=262_144, help="Gemma 3's vocabulary size")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq", type=int, default=320, help="tokens per sample (Gemma 3: 256 image tokens + prompt)")
    parser.add_argument("--answer", type=int, default=4, help="answer tokens per sample (VQA: a few)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--mode", choices=["full", "answer_only"], help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return
    results = {}
    for mode in ("full", "answer_only"):
        argv = [sys.executable, __file__, "--mode", mode] + [
            f"--{k}={v}" for k, v in vars(args).items() if k not in ("mode", "json") and v is not None]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    full, part = results["full"], results["answer_only"]
    ratios = {"step_time_ratio": round(part["step_s"] / full["step_s"], 3),
              "step_peak_memory_ratio": round(part["step_peak_mb"] / max(full["step_peak_mb"], 1e-9), 3)}
    print(f"device {full['device']} · vocab {args.vocab} · batch {args.batch} x {args.seq} tokens, "
          f"{args.answer} answer tokens per sample")
    print(f"{'setting':<14}{'step s':>10}{'step peak MB':>15}{'loss':>10}")
    for mode, row in results.items():
        print(f"{mode:<14}{row['step_s']:>10.3f}{row['step_peak_mb']:>15.1f}{row['loss_last']:>10.4f}")
    print(f"answer-only / full: step time x{ratios['step_time_ratio']}, step peak memory "
          f"x{ratios['step_peak_memory_ratio']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"settings": {k: v for k, v in vars(args).items() if k not in ("mode", "json")},
                       "results": results, "ratios": ratios}, handle, indent=2)


if __name__ == "__main__":
    main()
