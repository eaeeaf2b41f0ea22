"""Model-based report metrics of the 2025-26 MIMIC-CXR / IU-Xray papers, from local weights only.

F1-CheXbert, RadGraph F1 and BERTScore through RadEval 2.2.1 (the extra `radeval`; why RadEval
and not the older separate packages: docs/metrics.md). RadEval labels / parses / embeds the
reports itself; pefomed turns its per-report output into per-row statistics, so that the values
come with intervals from the same image/study bootstrap as every other metric, and so that a
paired comparison works on them.

The offline rule: RadEval downloads its weights on first use (hf_hub_download into its own
caches); here nothing is downloaded unless the user opts in (score option
`report_models_online`). Otherwise every weight must already be local, and a missing one is one
UserError naming the metric, the missing file or hub id and how to provide it. The hub is switched
to offline mode while RadEval loads, so that even a cached hub id makes no network call.

pefomed.score.clinical's rule-based labeler stays the offline default of the `clinical` section;
F1-CheXbert is the `chexbert` section, computed only when asked for.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from pefomed.errors import UserError
from pefomed.score.clinical import precision_recall_f1
from pefomed.score.rows import Row
from pefomed.score.stats import MetricSpec, mean_stats

EXTRA_HINT = "pip install 'pefomed[radeval]' (RadEval)"
RADGRAPH_MODELS = ("radgraph", "radgraph-xl", "modern-radgraph-xl", "echograph")
# f1chexbert's target_names, in its order (the class names of the `chexbert` section)
CHEXBERT_CLASSES = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                    "Fracture", "Support Devices", "No Finding")
CHEXBERT_BACKBONE = "bert-base-uncased"  # f1chexbert builds its labeler from this config and tokenizer
CHEXBERT_CHECKPOINT = "chexbert.pth"
HUB_REPO = "StanfordAIMI/RRG_scorers"  # where RadEval downloads chexbert.pth and the RadGraph archives from
BERTSCORE_DEFAULT = ("distilbert-base-uncased", 5)  # RadEval's BertScore defaults (model, layer)
# the averages of sklearn's classification_report, which f1chexbert's forward reports
AVERAGES = ("micro", "macro", "weighted", "samples")
# the score options the messages name (cli/ spells them as flags)
KEYS = ("report_models_dir", "report_models_online")


def _import(module: str, metric: str):
    import importlib

    try:
        with _no_nltk_download():
            return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"{metric}: {module.partition('.')[0]} is not installed ({exc})", hint=EXTRA_HINT) from None


@contextlib.contextmanager
def _no_nltk_download():
    """RadEval's package __init__ calls nltk.download("punkt_tab") at import, a network request
    on every import; none of the metrics here tokenizes with punkt, so the call is skipped."""
    try:
        import nltk
    except ImportError:
        yield
        return
    before = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        yield
    finally:
        nltk.download = before


@contextlib.contextmanager
def hub_mode(online: bool):
    """The Hugging Face hub offline (no request at all, cached files only) unless `online`:
    huggingface_hub reads HF_HUB_OFFLINE once at import, and transformers asks its constant."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or not online
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _hub_cached(repo_or_dir: str, filename: str = "config.json") -> bool:
    """Whether a transformers model/tokenizer named `repo_or_dir` loads without the network."""
    if os.path.isdir(repo_or_dir):
        return (Path(repo_or_dir) / filename).is_file()
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_or_dir, filename), str)


def _missing(metric: str, what: str, how: str, keys: tuple[str, ...]) -> UserError:
    return UserError(f"{metric}: {what} is not available locally (nothing is downloaded by default)",
                     keys=keys, hint=how)


def _hub_hint(repo: str) -> str:
    return (f"put {repo} in the local Hugging Face cache (HF_HOME; e.g. `hf download {repo}` on a "
            "machine with network), or set report_models_online to let pefomed download it")


def _report_rows(rows: list[Row]) -> np.ndarray:
    return np.flatnonzero(np.array([r.task == "report" for r in rows], dtype=bool))


# ---------------------------------------------------------------- F1-CheXbert

def chexbert_labels(texts: list[str], models_dir: str | None = None, online: bool = False) -> tuple[np.ndarray, Any]:
    """(reports, 14) 0/1 CheXbert labels, RadEval's own F1CheXbert.get_labels ("rrg" mode:
    present or uncertain = 1), and the scorer (for its class names)."""
    keys = KEYS
    module = _import("radeval.metrics.f1chexbert.f1chexbert", "F1-CheXbert")
    folder = Path(models_dir) if models_dir else Path(module.CACHE_DIR)
    if not online:
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(HUB_REPO, CHEXBERT_CHECKPOINT, cache_dir=str(folder)), str):
            raise _missing("F1-CheXbert", f"the CheXbert checkpoint {CHEXBERT_CHECKPOINT} of {HUB_REPO} in the hub "
                           f"cache {folder}", f"download it there once (hf download {HUB_REPO} {CHEXBERT_CHECKPOINT} "
                           f"--cache-dir {folder}), or name another such cache with report_models_dir, or set "
                           "report_models_online", keys)
        for name in ("config.json", "vocab.txt"):
            if not _hub_cached(CHEXBERT_BACKBONE, name):
                raise _missing("F1-CheXbert", f"{CHEXBERT_BACKBONE}'s {name} (CheXbert's backbone config and "
                               "tokenizer)", _hub_hint(CHEXBERT_BACKBONE), keys)
    before = module.CACHE_DIR
    # RadEval looks for the checkpoint in its module-level CACHE_DIR only
    module.CACHE_DIR = str(folder)
    try:
        with hub_mode(online):
            scorer = module.F1CheXbert(device="cuda" if _cuda() else "cpu")
    finally:
        module.CACHE_DIR = before
    labels = np.array(scorer.get_labels(list(texts)), dtype=np.float64).reshape(len(texts), 14)
    return labels, scorer


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _class_sums(sums, cols):
    """(..., classes, 3) [tp, fp, fn] of the classes `cols` from the (..., 14 * 3 + 5) sums."""
    return sums[..., :14 * 3].reshape(*sums.shape[:-1], 14, 3)[..., cols, :]


def _aggregate(avg: str, which: int, cols: list[int], suffix: str):
    """sklearn's average `avg` of precision/recall/F1 (`which`) over the classes `cols`, as a
    function of the summed statistics (so that the bootstrap resamples reports)."""
    sample_col = 14 * 3 + (0 if suffix == "14" else 3) + which  # per-report P/R/F1 of the "samples" average

    def fn(sums):
        s = _class_sums(sums, cols)
        if avg == "micro":
            t = s.sum(axis=-2)
            return precision_recall_f1(t[..., 0], t[..., 1], t[..., 2])[which]
        per = precision_recall_f1(s[..., 0], s[..., 1], s[..., 2])[which]
        if avg == "macro":
            return per.mean(axis=-1)
        if avg == "weighted":
            support = s[..., 0] + s[..., 2]
            total = support.sum(axis=-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(total > 0, (per * support).sum(axis=-1) / total, 0.0)
        return sums[..., sample_col] / sums[..., -1]  # samples: mean over reports
    return fn


def _per_report_prf(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(reports, 3) precision, recall, F1 of each report's label set (sklearn's "samples" average
    before the mean; an empty prediction and reference gives 0, its zero_division)."""
    tp = (pred * ref).sum(1)
    p, r, f = precision_recall_f1(tp, (pred * (1 - ref)).sum(1), ((1 - pred) * ref).sum(1))
    return np.stack([p, r, f], axis=1)


def chexbert_metrics(rows: list[Row], models_dir: str | None = None, online: bool = False,
                     notes: dict[str, Any] | None = None) -> list[MetricSpec]:
    """The `chexbert` section: precision/recall/F1 with every average of classification_report
    (micro, macro, weighted, samples) over the 14 classes and over the 5 (Cardiomegaly, Edema,
    Consolidation, Atelectasis, Pleural Effusion), per class, and f1chexbert's exact-match
    accuracy over the 5."""
    idx = _report_rows(rows)
    if idx.size == 0:
        return []
    labels, scorer = chexbert_labels([rows[i].prediction for i in idx] + [rows[i].reference for i in idx],
                                     models_dir, online)
    pred, ref = labels[:idx.size], labels[idx.size:]
    names = list(scorer.TARGET_NAMES)
    five = list(scorer.top5_idx)
    conf = np.stack([pred * ref, pred * (1 - ref), (1 - pred) * ref], axis=-1)  # (n, 14, 3)
    # one statistics array for the whole section: per-class [tp, fp, fn], the per-report P/R/F1
    # over 14 and over 5 classes (the "samples" average), the 5-class exact match, and 1 per report
    block = np.concatenate([conf.reshape(idx.size, -1), _per_report_prf(pred, ref),
                            _per_report_prf(pred[:, five], ref[:, five]),
                            (pred[:, five] == ref[:, five]).all(1, keepdims=True).astype(np.float64),
                            np.ones((idx.size, 1))], axis=1)
    stats = np.zeros((len(rows), block.shape[1]))
    stats[idx] = block
    n = int(idx.size)
    specs = []
    for suffix, cols in (("14", list(range(14))), ("5", five)):
        for avg in AVERAGES:
            for which, metric in enumerate(("precision", "recall", "f1")):
                specs.append(MetricSpec("chexbert", f"{metric}_{avg}/{suffix}", stats,
                                        _aggregate(avg, which, cols, suffix), n=n))
    for col, name in enumerate(names):
        for which, metric in enumerate(("precision", "recall", "f1")):
            specs.append(MetricSpec("chexbert", f"{metric}/{name}", stats, _aggregate("micro", which, [col], "14"),
                                    n=n, extra={"support": int(ref[:, col].sum())}))
    exact = block[:, -2]
    specs.append(MetricSpec("chexbert", "accuracy/5", stats, lambda s: s[..., -2] / s[..., -1], n=n,
                            binary=_scatter(exact, idx, len(rows)), mask=np.isin(np.arange(len(rows)), idx)))
    if notes is not None:
        notes["chexbert"] = {"labeler": "CheXbert (RadEval F1CheXbert; 'rrg' mode: present or uncertain = 1)",
                             "averages": "sklearn classification_report: micro, macro, weighted, samples",
                             "classes_5": [names[c] for c in five]}
    return specs


def _scatter(values: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    out[idx] = values
    return out


# ---------------------------------------------------------------- RadGraph F1

def _radgraph_module():
    radeval = _import("radeval", "RadGraph F1")
    import sys

    # RadEval 2.2.1's vendored RadGraph imports itself as `RadEval.metrics...` while the package
    # installs as `radeval`: on a case-sensitive file system that import fails, so the name is
    # aliased to the installed package and the vendored code is imported under that one name
    # (the code that runs is RadEval's own)
    sys.modules.setdefault("RadEval", radeval)
    return _import("RadEval.metrics.radgraph._vendor.core", "RadGraph F1")


def radgraph_rewards(hyps: list[str], refs: list[str], model_type: str, models_dir: str | None = None,
                     online: bool = False) -> np.ndarray:
    """(reports, 3) RadGraph F1 simple, partial, complete per report: RadEval's F1RadGraph
    (reward_level "all"; an empty report on either side scores 0, its rule)."""
    keys = KEYS
    core = _radgraph_module()
    cache = Path(models_dir) if models_dir else Path(core.CACHE_DIR)
    folder = cache / model_type
    if not online:
        needed = [folder / "config.json", folder / "weights.th", folder / "vocabulary"]
        gone = [p for p in needed if not p.exists()]
        if gone:
            raise _missing("RadGraph F1", f"the {model_type} model folder {folder} (missing {gone[0].name})",
                           f"extract {core.MODEL_MAPPING[model_type]} (hub {HUB_REPO}) into {folder}, or name the "
                           "folder holding it with report_models_dir, or set report_models_online", keys)
        import json

        config = json.loads((folder / "config.json").read_text())
        backbone = config["dataset_reader"]["token_indexers"]["bert"]["model_name"]
        if not _hub_cached(backbone):
            raise _missing("RadGraph F1", f"its transformer {backbone}", _hub_hint(backbone), keys)
    with hub_mode(online), contextlib.redirect_stdout(open(os.devnull, "w")):  # it prints its device
        scorer = core.F1RadGraph(reward_level="all", model_type=model_type, model_cache_dir=str(cache),
                                 cuda=0 if _cuda() else -1)
        _, rewards, _, _ = scorer(refs=list(refs), hyps=list(hyps))
    return np.array(rewards, dtype=np.float64).T.reshape(len(hyps), 3)


def radgraph_metrics(rows: list[Row], model_type: str, models_dir: str | None = None, online: bool = False,
                     notes: dict[str, Any] | None = None) -> list[MetricSpec]:
    idx = _report_rows(rows)
    if idx.size == 0:
        return []
    rewards = radgraph_rewards([rows[i].prediction for i in idx], [rows[i].reference for i in idx], model_type,
                               models_dir, online)
    mask = np.isin(np.arange(len(rows)), idx)
    specs = []
    for col, level in enumerate(("simple", "partial", "complete")):
        st, fn = mean_stats(_scatter(rewards[:, col], idx, len(rows)), mask)
        specs.append(MetricSpec("radgraph", f"f1_{level}", st, fn, n=int(idx.size), extra={"model": model_type}))
    if notes is not None:
        notes["radgraph"] = {"model": model_type, "package": "RadEval F1RadGraph, reward_level all",
                             "levels": "simple (entities), partial (entities + relation labels), complete "
                                       "(entities + relations with their targets)"}
    return specs


# ---------------------------------------------------------------- BERTScore

def bertscore_f1(hyps: list[str], refs: list[str], model: str, num_layers: int | None = None,
                 online: bool = False) -> tuple[np.ndarray, bool]:
    """BERTScore F1 per report (RadEval's BertScore, no idf) and whether it is rescaled with
    bert-score's baseline (RadEval's default, for its default model only: a baseline exists per
    model and layer)."""
    keys = KEYS + ("bertscore_layers",)
    module = _import("radeval.metrics.bertscore.bertscore", "BERTScore")
    if num_layers is None:
        if model != BERTSCORE_DEFAULT[0]:
            raise UserError(f"BERTScore: no default layer for {model!r}", keys=keys,
                            hint="set bertscore_layers (the hidden layer whose embeddings are compared)")
        num_layers = BERTSCORE_DEFAULT[1]
    if not online and not _hub_cached(model):
        raise _missing("BERTScore", f"the model {model}", _hub_hint(model) if not os.path.isabs(model)
                       else "pass a folder holding a transformers model and tokenizer", keys)
    rescale = (model, num_layers) == BERTSCORE_DEFAULT
    with hub_mode(online):
        scorer = module.BertScore(model_type=model, num_layers=num_layers, rescale_with_baseline=rescale)
        _, per = scorer(refs=list(refs), hyps=list(hyps))
    return np.asarray(per, dtype=np.float64), rescale


def bertscore_metrics(rows: list[Row], model: str, num_layers: int | None = None, online: bool = False,
                      notes: dict[str, Any] | None = None) -> list[MetricSpec]:
    idx = _report_rows(rows)
    if idx.size == 0:
        return []
    f1, rescaled = bertscore_f1([rows[i].prediction for i in idx], [rows[i].reference for i in idx], model,
                                num_layers, online)
    st, fn = mean_stats(_scatter(f1, idx, len(rows)), np.isin(np.arange(len(rows)), idx))
    if notes is not None:
        notes["bertscore"] = {"model": model, "num_layers": num_layers or BERTSCORE_DEFAULT[1], "idf": False,
                              "baseline_rescaling": rescaled}
    return [MetricSpec("bertscore", "f1", st, fn, n=int(idx.size), extra={"model": model, "rescaled": rescaled})]
