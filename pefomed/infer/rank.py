"""Closed answers by ranking: score every candidate answer's log-likelihood after the prompt and
predict the best, instead of generating free text (which zero-shot models pad with sentences that
exact match counts wrong).

A candidate's score is the sum of the log-probabilities of its tokens and of the end token, laid
out exactly as training lays out an answer (pefomed.data.collate.Collator.append_answer). Every
(question, candidate) pair is one row of a right-padded batch, so a row computes what it computes
alone (tests/infer/test_rank.py). The prediction is always one of the candidates, verbatim.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence

from pefomed.records import Sample

RANK_RULE = ("candidates: the sample's meta 'choices' or 'options' (a {letter: text} mapping or a list; "
             "'L: text' when the question lists the choices that way, as `prepare --multiple-choice` does), "
             "else for an English closed question that offers no alternatives (no ' or '): yes / no; "
             "every other question is generated")

YES_NO = ("yes", "no")
_OR = re.compile(r"\bor\b", re.IGNORECASE)


def _options(meta: dict) -> tuple[list[str], dict[str, str]] | None:
    for key in ("choices", "options"):
        value = meta.get(key)
        if isinstance(value, dict) and value:
            lettered = {str(k): str(v) for k, v in value.items() if str(v).strip()}
            return list(lettered.values()), lettered
        if isinstance(value, list) and value:
            return [str(v) for v in value if str(v).strip()], {}
    return None


def closed_candidates(sample: Sample) -> list[str] | None:
    """The answers a closed question is ranked among, or None when it is to be generated (RANK_RULE).

    Only the question and its meta decide, never the reference answer."""
    if sample.task != "vqa":
        return None
    options = _options(sample.meta or {})
    if options is not None:
        texts, lettered = options
        question = sample.question or ""
        # `prepare pmc-vqa --multiple-choice` lists "A: text" lines in the question and answers "A: text"
        if lettered and all(f"{k}: {v}" in question for k, v in lettered.items()):
            return [f"{k}: {v}" for k, v in lettered.items()]
        return list(dict.fromkeys(texts)) or None
    language = (sample.meta or {}).get("language", "en")
    if sample.answer_type == "closed" and language in ("en", None) and not _OR.search(sample.question or ""):
        return list(YES_NO)
    return None


def _accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


class Ranker:
    """Log-likelihood of candidate answers after each prompt; `batch_size` rows per forward pass."""

    def __init__(self, model, processor, data, image_root, batch_size: int = 8, blind: bool = False):
        from pefomed.data.collate import Collator
        from pefomed.models.generation import model_device_dtype

        self.model = model
        # train=True: right padding and the labels that mark answer + end token, as in training
        self.collator = Collator(processor, data, image_root, train=True, blind=blind)
        self.batch_size = batch_size
        self.device, self.dtype = model_device_dtype(model)
        self.keep_logits = _accepts_logits_to_keep(model)

    def encode_prompts(self, samples: Sequence[Sample],
                       shots: Sequence[Sequence[Sample]] | None = None) -> list[dict]:
        """Each sample's prompt encoding (images decoded): what DataLoader workers can prepare."""
        shots = shots if shots is not None else [()] * len(samples)
        return [self.collator.encode_prompt(sample, chosen) for sample, chosen in zip(samples, shots)]

    def scores(self, samples: Sequence[Sample], candidates: Sequence[Sequence[str]],
               shots: Sequence[Sequence[Sample]] | None = None, prompts: Sequence[dict] | None = None
               ) -> list[list[float]]:
        """For each sample, the summed log-probability of each of its candidates (+ end token).
        `prompts`: the samples' `encode_prompts`, when already made (else encoded here)."""
        prompts = prompts if prompts is not None else self.encode_prompts(samples, shots)
        rows, owners = [], []
        for i, (prompt, options) in enumerate(zip(prompts, candidates)):  # images processed once per sample
            for text in options:
                rows.append(self.collator.append_answer(prompt, text, truncate=False))
                owners.append(i)
        flat: list[float] = []
        for start in range(0, len(rows), self.batch_size):
            flat.extend(self._score_rows(rows[start:start + self.batch_size]))
        out: list[list[float]] = [[] for _ in samples]
        for owner, value in zip(owners, flat):
            out[owner].append(value)
        return out

    def ranked(self, samples: Sequence[Sample], candidates: Sequence[Sequence[str]],
               shots: Sequence[Sequence[Sample]] | None = None, prompts: Sequence[dict] | None = None
               ) -> list[list[str]]:
        """Each sample's candidates, best first (the earlier of equals first on a tie)."""
        out = []
        for options, values in zip(candidates, self.scores(samples, candidates, shots, prompts)):
            out.append([options[j] for j in sorted(range(len(values)), key=lambda j: (-values[j], j))])
        return out

    def __call__(self, samples: Sequence[Sample], candidates: Sequence[Sequence[str]],
                 shots: Sequence[Sequence[Sample]] | None = None) -> list[str]:
        """The best candidate of each sample (the first of equals on a tie)."""
        return [order[0] for order in self.ranked(samples, candidates, shots)]

    def _score_rows(self, rows: list[dict]) -> list[float]:
        import torch

        from pefomed.data.collate import IGNORE_INDEX
        from pefomed.models.generation import to_device

        batch = self.collator(rows)
        labels = batch.pop("labels")
        length = labels.shape[1]
        supervised = labels != IGNORE_INDEX
        first = int(supervised.float().argmax(dim=1).min())  # earliest answer token of any row
        kwargs = {}
        if self.keep_logits:
            # only the positions that predict answer tokens: a real vocabulary times a long
            # image prompt would otherwise be most of the memory
            kwargs["logits_to_keep"] = length - first + 1
        with torch.inference_mode():
            logits = self.model(**to_device(batch, self.device, self.dtype), **kwargs).logits
        # the last n logits belong to the last n positions (prompt-tuning prepends virtual tokens)
        n = min(logits.shape[1], length)
        logits = logits[:, -n:].float()
        targets = labels[:, length - n + 1:].to(logits.device)
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        picked = picked.masked_fill(targets == IGNORE_INDEX, 0.0)
        return picked.sum(dim=1).tolist()
