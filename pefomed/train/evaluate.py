"""Periodic evaluation during training: generate on the val split, score, keep the best.

The selection metric follows PeFoMed: exact-match VQA accuracy for VQA, BLEU-4 + CIDEr for
report generation (`train.select_metric: auto` picks by the split's task). Every process
generates its share and gets everyone's predictions back, so all processes agree on whether a
step is the new best (saving under ZeRO-3 needs all of them).
"""

from __future__ import annotations

import math

from pefomed.errors import UserError
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


def evaluate(model, processor, recipe, data_dir, samples: list[Sample], metric: str, rank: int, world: int,
             stage: int) -> float:
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
    return metric_value(metric, samples, [texts[i] for i in range(len(samples))])
