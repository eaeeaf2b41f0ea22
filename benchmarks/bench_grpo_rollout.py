"""GRPO rollouts (train.objective=grpo): the rollout's share of a step, and samples/s of pefomed's
batched rollout against plain `generate` loops producing the same answers, same run.

1. Share: a short GRPO run through the real loop (`pefomed.train.loop.train`, ZeRO-2, fp32); each
   train_log row's `rollout_share` is the rollout's seconds over the step's (rollouts + reference
   and policy forwards + backward + optimizer step). Step 1 (warm-up) is left out; the median of
   the others is printed.
2. Samples/s, on the engine that run returns (same weights, same prompts, same max_new_tokens,
   eos/pad ids and suppressed image-placeholder tokens on every side):
   - pefomed: `GrpoStepper.rollout` itself (pefomed.train.grpo_step), one batched `generate`
     call per group batch of B questions x G answers, rewards and advantages included;
   - loop per question: for each question one `generate` call asking for its G answers
     (`num_return_sequences=G`, the loop a GRPO tutorial writes);
   - loop per answer: G calls of one answer each per question.
   Each side encodes its prompts inside its timing (pefomed.data.collate.Collator, the same
   encoding, so only the calling pattern differs); one untimed call first pays one-off costs.

`--greedy`: the correctness check. GRPO's rollout always samples (train.grpo.temperature > 0), so
its greedy form is top_p = 1e-6: the nucleus then holds only the most likely token, i.e. greedy
decoding through the rollout's own code; the loops use do_sample=False (under greedy
`num_return_sequences` is refused by transformers, so the per-question call repeats its prompt G
times, which is what num_return_sequences does inside generate). Every completion must then be the
same on every side; the count of equal ones is printed.

Usage:
  python benchmarks/bench_grpo_rollout.py                          # tiny, 32 questions, G 4, B 8
  python benchmarks/bench_grpo_rollout.py --size small --generations 8 --questions 64 --repeat 3
  python benchmarks/bench_grpo_rollout.py --greedy --json out.json

Sizes: tiny (the built-in tiny LLaVA), small (text_hidden 256, text_layers 4), as bench_train.
Numbers move with the machine's idle cores: the script prints the CPU count and the load average
before and after; a ratio measured while other processes load the machine is not a claim.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

SIZES = {"tiny": [], "small": ["model.tiny.text_hidden=256", "model.tiny.text_layers=4"]}
GREEDY_TOP_P = 1e-6  # the nucleus of one token: greedy decoding through the sampling rollout


def grpo_recipe(args, data: Path):
    from pefomed.recipe import load_recipe

    recipe = load_recipe("tiny-demo", [
        "model.kind=tiny", *SIZES[args.size], "train.objective=grpo", f"train.batch_size={args.batch_size}",
        f"train.max_steps={args.steps}", f"train.grpo.num_generations={args.generations}",
        f"train.grpo.max_new_tokens={args.max_new_tokens}", f"train.grpo.temperature={args.temperature}",
        f"train.grpo.top_p={GREEDY_TOP_P if args.greedy else args.top_p}", "train.log_every=1",
        "train.save_every=100000", "train.tensorboard=false", "train.length_prepass=false",
        "train.warmup_steps=0", "train.seed=0"])
    recipe.data.dir = str(data)
    return recipe


def step_shares(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [row["rollout_share"] for row in rows if "rollout_share" in row]


def pefomed_rollouts(stepper, ids: list[str], batch: int) -> tuple[float, list[str], int]:
    """Seconds, completions (question after question, G each) and generate calls of
    GrpoStepper.rollout over `ids` in group batches of `batch` questions."""
    texts, calls = [], 0
    start = time.perf_counter()
    for k in range(0, len(ids), batch):
        rollout = stepper.rollout(ids[k:k + batch], micro=k // batch)
        texts.extend(rollout.texts)
        calls += 1
    return time.perf_counter() - start, texts, calls


def loop_rollouts(stepper, samples: list, args, per_answer: bool) -> tuple[float, list[str], int]:
    """A plain loop of `generate` calls: per question one call for its G answers, or (per_answer)
    G calls of one answer each. The same generation settings as the rollout's."""
    import torch

    from pefomed.models.generation import to_device

    gen, model, g = stepper.generator, stepper.engine.module, args.generations
    settings = dict(max_new_tokens=args.max_new_tokens, use_cache=True, eos_token_id=gen.eos,
                    pad_token_id=gen.collator.pad_id,
                    **({"suppress_tokens": stepper.suppressed} if stepper.suppressed else {}))
    if args.greedy:
        settings["do_sample"] = False
    else:
        settings.update(do_sample=True, temperature=args.temperature, top_p=args.top_p, top_k=0)
    texts, calls = [], 0
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for sample in samples:
            prompt = to_device(gen.encode([sample]), gen.device, gen.dtype)
            if per_answer:
                outputs = [model.generate(**prompt, **settings) for _ in range(g)]
            elif args.greedy:  # transformers refuses num_return_sequences > 1 without sampling
                repeated = {k: v.repeat_interleave(g, dim=0) if torch.is_tensor(v) else v for k, v in prompt.items()}
                outputs = [model.generate(**repeated, **settings)]
            else:
                outputs = [model.generate(**prompt, num_return_sequences=g, **settings)]
            calls += len(outputs)
            for out in outputs:
                completion = out[:, prompt["input_ids"].shape[1]:]
                texts.extend(t.strip() for t in gen.processor.tokenizer.batch_decode(
                    _cut_after_eos(completion, gen.eos, gen.collator.pad_id), skip_special_tokens=True))
    return time.perf_counter() - start, texts, calls


def _cut_after_eos(completion, eos: list[int], pad_id: int):
    """Tokens after a row's first end-of-sequence become padding (as the rollout masks them):
    a G-row call keeps generating for rows that have already stopped."""
    import torch

    is_eos = torch.isin(completion, torch.tensor(eos, device=completion.device))
    after = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    return completion.masked_fill(after, pad_id)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--generations", type=int, default=4, help="G: answers per question")
    parser.add_argument("--questions", type=int, default=32, help="questions timed on each side")
    parser.add_argument("--batch-size", type=int, default=8, help="B: questions per rollout (group batch)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=6, help="GRPO steps of the share run (step 1 left out)")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding: every completion must agree")
    parser.add_argument("--repeat", type=int, default=1, help="time each side this many times (alternating); "
                                                              "the fastest of each is compared")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch
    from transformers import AutoProcessor

    from pefomed.data.synthetic import write_bright_spot_dataset
    from pefomed.records import read_split
    from pefomed.train.grpo_step import GrpoStepper
    from pefomed.train.loop import train

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        tmp = Path(tmp)
        data = write_bright_spot_dataset(tmp / "data", n_train=max(args.questions, args.batch_size), n_test=1)
        recipe = grpo_recipe(args, data)
        result = train(recipe, tmp / "run")
        shares = step_shares(tmp / "run")[1:] or step_shares(tmp / "run")
        processor = AutoProcessor.from_pretrained(tmp / "run" / "processor")
        samples = read_split(data, "train")[:args.questions]
        stepper = GrpoStepper(result.engine, processor, recipe, data, {s.id: s for s in samples}, rank=0, world=1,
                              stage=2)
        ids = [s.id for s in samples]
        sides = {"pefomed": lambda: pefomed_rollouts(stepper, ids, args.batch_size),
                 "loop_per_question": lambda: loop_rollouts(stepper, samples, args, per_answer=False),
                 "loop_per_answer": lambda: loop_rollouts(stepper, samples, args, per_answer=True)}
        # one untimed call of each shape first: the first generate calls pay one-off costs
        pefomed_rollouts(stepper, ids[:args.batch_size], args.batch_size)
        loop_rollouts(stepper, samples[:1], args, per_answer=False)
        timings = {name: [] for name in sides}
        outputs = {}
        for _ in range(args.repeat):
            for name, side in sides.items():
                seconds, texts, calls = side()
                timings[name].append(seconds)
                outputs[name] = (texts, calls)
        params = sum(p.numel() for p in result.engine.module.parameters())
    load_after = os.getloadavg()
    report = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "load_average_before": load_before, "load_average_after": load_after},
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "parameters": params, "rollout_share": {"median": statistics.median(shares), "min": min(shares),
                                                      "max": max(shares), "steps": len(shares)},
              "sides": {}}
    base = min(timings["pefomed"])
    for name in sides:
        texts, calls = outputs[name]
        seconds = min(timings[name])
        report["sides"][name] = {"seconds": seconds, "seconds_all": timings[name], "samples": len(texts),
                                 "generate_calls": calls, "samples_per_s": len(texts) / seconds,
                                 # pefomed's samples/s over this side's (equal sample counts)
                                 "pefomed_speedup": seconds / base}
    ours = outputs["pefomed"][0]
    report["completions_equal"] = {name: sum(a == b for a, b in zip(ours, outputs[name][0]))
                                   for name in sides if name != "pefomed"}
    # what was compared: empty completions would agree trivially
    report["examples"] = ours[:3]
    report["nonempty_completions"] = sum(bool(t) for t in ours)
    print_report(report, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


TITLES = {"pefomed": "pefomed rollout (GrpoStepper.rollout, one call per group batch)",
          "loop_per_question": "loop: one generate call per question (G answers)",
          "loop_per_answer": "loop: one generate call per answer"}


def print_report(report: dict, args) -> None:
    machine, share = report["machine"], report["rollout_share"]
    decoding = "greedy (rollout top_p 1e-6)" if args.greedy else f"sampling T {args.temperature} top_p {args.top_p}"
    print(f"GRPO rollouts: {args.size} LLaVA ({report['parameters']:,} parameters), {args.questions} questions x G "
          f"{args.generations}, B {args.batch_size} questions per rollout, max_new_tokens {args.max_new_tokens}, "
          f"{decoding}, fp32")
    print(f"machine: {machine['cpus']} CPUs, torch threads {machine['torch_threads']}, load average "
          f"{' '.join(f'{x:.2f}' for x in machine['load_average_before'])} before, "
          f"{' '.join(f'{x:.2f}' for x in machine['load_average_after'])} after")
    print(f"rollout share of a GRPO step (train_log rollout_share, {share['steps']} steps after the first): "
          f"median {share['median']:.1%} (min {share['min']:.1%}, max {share['max']:.1%})")
    print()
    print("| side | generate calls | samples | seconds | samples/s | pefomed / side samples/s |")
    print("|---|---|---|---|---|---|")
    for name, side in report["sides"].items():
        print(f"| {TITLES[name]} | {side['generate_calls']} | {side['samples']} | {side['seconds']:.3f} | "
              f"{side['samples_per_s']:.1f} | x{side['pefomed_speedup']:.2f} |")
    print()
    n = report["sides"]["pefomed"]["samples"]
    print("completions equal to pefomed's: " + ", ".join(
        f"{name} {equal}/{n}" for name, equal in report["completions_equal"].items()) +
          ("" if args.greedy else " (sampling: each side draws its own answers; --greedy checks equality)"))
    print(f"non-empty completions: {report['nonempty_completions']}/{n}; first: {report['examples'][:1]}")
    print(f"note: numbers measured while other processes load the machine (load average "
          f"{machine['load_average_before'][0]:.2f} on {machine['cpus']} CPUs at the start) are not claims; "
          "compare ratios from an idle machine")


if __name__ == "__main__":
    main()
