"""RaTEScore and GREEN in `pefomed score`, through RadEval 2.2.1 (the extra `radeval`), from local
weights only: the same offline rule, messages and per-report statistics as
pefomed.score.report_models (F1-CheXbert, RadGraph, BERTScore), so that both come with intervals
from the image/study/patient bootstrap and work in a paired comparison.

- RaTEScore (Zhao et al. 2024): RadEval's RaTEScore, i.e. medspacy sentence splitting, the NER model
  Angelakeke/RaTE-NER-Deberta, the entity embedder FremyCompany/BioLORD-2023-C and its "long"
  affinity matrix; one score per report pair.
- GREEN (Ostmeier et al. 2024): RadEval's GREEN, i.e. an LLM judge (StanfordAIMI/GREEN-radllama2-7b
  by default) that writes an error analysis per pair, which RadEval parses into counts; GREEN =
  matched findings / (matched findings + clinically significant errors), 0 where it finds no match.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import numpy as np

from pefomed.errors import UserError
from pefomed.score.report_models import (KEYS, _hub_cached, _hub_hint, _import, _missing,
                                         _no_nltk_download, _report_rows, _scatter, _cuda, hub_mode)
from pefomed.score.rows import Row
from pefomed.score.stats import MetricSpec, mean_stats

RATESCORE_NER = "Angelakeke/RaTE-NER-Deberta"  # RadEval's RaTEScore defaults
RATESCORE_EMBEDDING = "FremyCompany/BioLORD-2023-C"
RATESCORE_NO_ENTITIES = 0.5  # RaTEScore's score where either report has no entity
GREEN_DEFAULT = "StanfordAIMI/GREEN-radllama2-7b"  # RadEval's GreenMetric default


def _local_model(metric: str, model: str, keys: tuple[str, ...], role: str) -> None:
    """The offline rule: a folder with a config.json, or a hub id already in the local cache."""
    folder_hint = "pass a folder holding a transformers model (config.json) and its tokenizer"
    # a path that is not there is not a hub id either (huggingface_hub rejects it as a repo id)
    if os.path.isabs(model) or model.startswith(".") or os.path.exists(model) or model.count("/") > 1:
        if not os.path.isfile(os.path.join(model, "config.json")):
            raise _missing(metric, f"its {role} {model} (no config.json there)", folder_hint, keys)
        return
    if not _hub_cached(model):
        raise _missing(metric, f"its {role} {model}", _hub_hint(model), keys)


# ---------------------------------------------------------------- RaTEScore

def _ratescore_module():
    """RadEval's RaTEScore (it loads medspacy's sentence splitter at import). spaCy 3.7 and its
    thinc 8.2 are built against numpy 1 and fail to import under numpy 2 (a ValueError, not an
    ImportError); medspacy allows spaCy 3.8 (numpy 2 builds) only from Python 3.12 on."""
    try:
        with _no_nltk_download():
            return _import("radeval.metrics.RaTEScore.scorer", "RaTEScore")
    except ValueError as exc:
        import numpy

        raise UserError(f"RaTEScore: its sentence splitter medspacy cannot import spaCy ({exc}; numpy "
                        f"{numpy.__version__}, Python {sys.version_info.major}.{sys.version_info.minor})",
                        hint="RaTEScore needs spaCy 3.8 (thinc 8.3, built for numpy 2): on Python 3.12+ "
                             "pip install 'spacy>=3.8,<3.9'; on Python 3.11 medspacy's metadata pins spacy<3.8, "
                             "see docs/metrics.md for the override") from None


def ratescore_scores(hyps: list[str], refs: list[str], ner_model: str = RATESCORE_NER,
                     embedding_model: str = RATESCORE_EMBEDDING, online: bool = False) -> np.ndarray:
    """RaTEScore per report pair: RadEval's RaTEScore.compute_score.

    RadEval's sentence splitter drops a report without a sentence (empty, or under 3 characters),
    which shifts every later report onto the wrong partner; such pairs are scored 0.5 here, its own
    score for a pair without entities, and the rest go to RadEval in one call."""
    keys = KEYS + ("ratescore_ner_model", "ratescore_embedding_model")
    module = _ratescore_module()
    if not online:
        _local_model("RaTEScore", ner_model, keys, "NER model")
        _local_model("RaTEScore", embedding_model, keys, "entity embedding model")
    from radeval.metrics.RaTEScore.utils import sentence_split

    has_sentence = np.array([bool(sentence_split([h])[0]) and bool(sentence_split([r])[0])
                             for h, r in zip(hyps, refs)], dtype=bool)
    out = np.full(len(hyps), RATESCORE_NO_ENTITIES)
    keep = np.flatnonzero(has_sentence)
    if keep.size:
        with hub_mode(online):
            scorer = module.RaTEScore(bert_model=ner_model, eval_model=embedding_model, use_gpu=_cuda())
        scores, _, _ = scorer.compute_score([hyps[i] for i in keep], [refs[i] for i in keep])
        out[keep] = np.asarray(scores, dtype=np.float64)
    return out


def ratescore_metrics(rows: list[Row], ner_model: str = RATESCORE_NER, embedding_model: str = RATESCORE_EMBEDDING,
                      online: bool = False, notes: dict[str, Any] | None = None) -> list[MetricSpec]:
    idx = _report_rows(rows)
    if idx.size == 0:
        return []
    scores = ratescore_scores([rows[i].prediction for i in idx], [rows[i].reference for i in idx], ner_model,
                              embedding_model, online)
    st, fn = mean_stats(_scatter(scores, idx, len(rows)), np.isin(np.arange(len(rows)), idx))
    if notes is not None:
        notes["ratescore"] = {"package": "RadEval RaTEScore", "ner_model": ner_model,
                              "embedding_model": embedding_model, "affinity_matrix": "long"}
    return [MetricSpec("ratescore", "ratescore", st, fn, n=int(idx.size),
                       extra={"ner_model": ner_model, "embedding_model": embedding_model})]


# ---------------------------------------------------------------- GREEN

@contextlib.contextmanager
def _keep_start_method():
    """RadEval's green module sets multiprocessing's start method to spawn at import; the rest of
    pefomed keeps the platform default (GREEN asks for its spawn context itself where it uses one)."""
    import multiprocessing as mp

    before = mp.get_start_method(allow_none=True)
    try:
        yield
    finally:
        if mp.get_start_method(allow_none=True) != before:
            mp.set_start_method(before, force=True)


def green_scores(hyps: list[str], refs: list[str], model: str = GREEN_DEFAULT, batch_size: int = 8,
                 max_length: int = 2048, online: bool = False,
                 names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """GREEN per report pair and the judge's analyses: RadEval's GREEN.__call__ on one device (its
    multi-GPU path loads the judge in spawned workers, outside the offline switch). `names`: the
    rows' ids, for the messages."""
    keys = KEYS + ("green", "green_batch_size", "green_max_length")
    with _keep_start_method():
        module = _import("radeval.metrics.green_score.green", "GREEN")
    if not online:
        _local_model("GREEN", model, keys, "judge model")
    with hub_mode(online), _keep_start_method():
        scorer = module.GREEN(model, output_dir=".", cpu=not _cuda(), num_gpus=1)
    scorer.batch_size, scorer.max_length = batch_size, max_length
    # its prompt and the generated analysis share max_length, and a longer prompt is cut silently
    from radeval.metrics.green_score.utils import make_prompt

    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        text = scorer.tokenizer.apply_chat_template([{"from": "human", "value": make_prompt(ref, hyp)},
                                                     {"from": "gpt", "value": ""}], tokenize=False,
                                                    add_generation_prompt=True)
        length = len(scorer.tokenizer(text)["input_ids"])
        if length >= max_length:
            name = f"row {names[i]!r}" if names else f"report {i + 1}"
            raise UserError(f"GREEN: the judge's prompt for {name} is {length} tokens, not below "
                            f"`green_max_length` {max_length} (prompt and analysis share it)",
                            keys=("green_max_length",), hint=f"set green_max_length well above {length}")
    with _keep_start_method():
        _, _, per, results = scorer(list(refs), list(hyps))
    if any(v is None for v in per):
        raise UserError("GREEN: RadEval could not parse a judge's analysis into counts", keys=("green",),
                        hint="check that the judge model is a GREEN model")
    return np.asarray(per, dtype=np.float64), list(results["green_analysis"])


def green_metrics(rows: list[Row], model: str = GREEN_DEFAULT, batch_size: int = 8, max_length: int = 2048,
                  online: bool = False, notes: dict[str, Any] | None = None) -> list[MetricSpec]:
    idx = _report_rows(rows)
    if idx.size == 0:
        return []
    scores, _ = green_scores([rows[i].prediction for i in idx], [rows[i].reference for i in idx], model,
                             batch_size, max_length, online, names=[rows[i].id for i in idx])
    st, fn = mean_stats(_scatter(scores, idx, len(rows)), np.isin(np.arange(len(rows)), idx))
    if notes is not None:
        notes["green"] = {"package": "RadEval GREEN (greedy decoding)", "model": model, "max_length": max_length,
                          "batch_size": batch_size,
                          "score": "matched / (matched + clinically significant errors), 0 without a match"}
    return [MetricSpec("green", "green", st, fn, n=int(idx.size), extra={"model": model})]

