"""Periodic evaluation during training: generate on the val split, score, keep the best.

The selection metric follows PeFoMed: exact-match VQA accuracy for VQA, BLEU-4 + CIDEr for
report generation (`train.select_metric: auto` picks by the split's task). Every process
generates its share and gets everyone's predictions back, so all processes agree on whether a
step is the new best (saving under ZeRO-3 needs all of them).

A mixture (data.mix) is evaluated per source, each source on its own val split with its own
selection metric, and the best step is the one with the highest mean over the evaluated sources
of each source's value scaled to [0, 1] by its metric's range (`scaled`): VQA accuracy as it is,
BLEU-4 + CIDEr-D divided by 11 (BLEU-4 <= 1; CIDEr-D <= 10, pycocoevalcap's x10 of clipped
cosines times a length penalty <= 1). Every source counts the same, whatever its size or ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pefomed.errors import UserError
from pefomed.metrics.reasoning import extract_answer
from pefomed.records import Sample


def selection_metric(samples: list[Sample], choice: str) -> str:
    if choice != "auto":
        return choice
    tasks = {s.task for s in samples}
    if tasks == {"vqa"}:
        return "vqa_accuracy"
    if tasks == {"report"}:
        return "bleu4_cider"
    raise UserError("the val split mixes vqa and report samples; set train.select_metric explicitly")


def metric_value(name: str, samples: list[Sample], predictions: list[str]) -> float:
    if name == "vqa_accuracy":
        from pefomed.metrics.vqa import exact_match

        return sum(exact_match(p, s.answer) for p, s in zip(predictions, samples)) / len(samples)
    from pefomed.metrics.nlg import corpus_scores

    scores = corpus_scores(predictions, [[s.answer] for s in samples])
    return scores["BLEU-4"] + scores["CIDEr-D"]


def score_generated(name: str, samples: list[Sample], texts: list[str], answer_template: str) -> float:
    """The selection metric of generated texts: each text's answer under infer.answer_template
    (think_answer: the text inside <answer>...</answer>) is scored, the prediction `pefomed infer`
    writes for it, so the best step is chosen by what infer and score will later measure."""
    return metric_value(name, samples, [extract_answer(t, answer_template) for t in texts])


# the largest value each selection metric can take: a mixture's rule scales every source into [0, 1]
METRIC_RANGE = {"vqa_accuracy": 1.0, "bleu4_cider": 11.0}
MIXTURE_METRIC = "mixture_mean"


@dataclass
class EvalSet:
    """One val split to evaluate: `name` None for a plain data.dir run, the source's name in a mixture."""

    name: str | None
    data_dir: Path
    samples: list[Sample]
    metric: str


@dataclass
class Evaluation:
    """One evaluation: the value that selects the best step, and (mixture) each source's own."""

    metric: str
    value: float
    sources: dict[str, dict] | None = None


def mixture_value(per_source: dict[str, dict]) -> float:
    """The selection rule of a mixture: the mean of the sources' scaled values."""
    return sum(entry["scaled"] for entry in per_source.values()) / len(per_source)


def evaluate(model, processor, recipe, evals: list[EvalSet], rank: int, world: int, stage: int) -> Evaluation:
    """Generate on every val split of the plan and score it (every process joins every call)."""
    if len(evals) == 1 and evals[0].name is None:
        only = evals[0]
        return Evaluation(only.metric, generate_and_score(model, processor, recipe, only.data_dir, only.samples,
                                                          only.metric, rank, world, stage))
    per_source = {}
    for item in evals:
        value = generate_and_score(model, processor, recipe, item.data_dir, item.samples, item.metric, rank, world,
                                   stage)
        per_source[item.name] = {"metric": item.metric, "value": value, "scaled": value / METRIC_RANGE[item.metric],
                                 "samples": len(item.samples)}
    return Evaluation(MIXTURE_METRIC, mixture_value(per_source), per_source)


def generate_and_score(model, processor, recipe, data_dir, samples: list[Sample], metric: str, rank: int,
                       world: int, stage: int) -> float:
    import torch.distributed as dist

    from pefomed.models.generation import Generator

    generate = Generator(model, processor, recipe.data, data_dir, recipe.infer.max_new_tokens,
                         recipe.infer.num_beams, synced=stage == 3 and world > 1)
    mine = list(range(rank, len(samples), world))
    batch = recipe.infer.batch_size
    # every process runs the same number of generate calls (ZeRO-3 gathers parameters together)
    calls = math.ceil(math.ceil(len(samples) / world) / batch)
    texts: dict[int, str] = {}
    was_training = model.training
    model.eval()
    for call in range(calls):
        chunk = mine[call * batch:(call + 1) * batch]
        padded = chunk or mine[-1:] or [0]  # a process with nothing left still joins the call
        out = generate([samples[i] for i in padded])
        texts.update({i: t for i, t in zip(chunk, out)})
    if was_training:
        model.train()
    if world > 1:
        shards: list = [None] * world
        dist.all_gather_object(shards, texts)
        texts = {k: v for shard in shards for k, v in shard.items()}
    return score_generated(metric, samples, [texts[i] for i in range(len(samples))], recipe.infer.answer_template)
