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

from pefomed.models.bundle import innermost
from pefomed.records import Sample

RANK_RULE = ("candidates: the sample's meta 'choices' or 'options' (a {letter: text} mapping or a list; "
             "'L: text' when the question lists the choices that way, as prepare's pmc-vqa `multiple_choice` does), "
             "else, for every English closed question: the alternatives the question names around 'or' "
             "(also 'vs'/'versus'; 'X or Y', 'X, Y or Z', 'X or Y or Z'; each a phrase of at most 3 words with "
             "articles dropped, given also as its shorter forms and with a head noun the last one carries: "
             "'left or right side' -> left, right, right side, left side), plus yes / no when the question "
             "asks yes or no (its first word an auxiliary verb (is, are, does, can, was, ...) or 'any'/'there') or "
             "names no alternatives; an alternatives-only set for other questions with 'or' (which/what/how, "
             "statements); every other question (open, other languages, reports) is generated")

YES_NO = ("yes", "no")
MAX_WORDS = 3  # words of one alternative

# first words of a question that asks yes or no ("Is/Are there ..." counts by its first part)
YES_NO_STARTS = frozenset("is are am was were do does did can could has have had will would shall should may might "
                          "must any there".split())
_ARTICLES = frozenset("a an the".split())
# words that end an alternative on either side of 'or' (the word next to 'or' is always kept)
_DETERMINERS = frozenset("this that these those its their his her your my our some any either whether just only".split())
_PREPOSITIONS = frozenset("of in on at to than for from by near into onto within inside outside under over "
                          "between among across along through with without as".split())
_VERBS = frozenset("used seen located shown present found noted taken visible identified made performed "
                   "is are was were be been being do does did can could has have had will would should may might "
                   "appear appears look looks show shows suggest".split())
_CLAUSE = frozenset("that which when where while if and but what who how why whom whose it there you we they he "
                    "she".split())
_BOUNDARY = _ARTICLES | _DETERMINERS | _PREPOSITIONS | _VERBS | _CLAUSE
_OR = re.compile(r"\b(?:or|vs\.?|versus)(?=\W|$)", re.IGNORECASE)
_TOKEN = re.compile(r"[^\W_](?:[\w'’.+-]*[^\W_])?|,", re.UNICODE)


def _tokens(question: str) -> list[str]:
    """Words and commas; '/' splits words ("Is/Are", "near/in"), a word keeps inner ' . + -."""
    return _TOKEN.findall(question)


def _backward(piece: list[str]) -> list[str]:
    """The alternative that ends `piece` (the words before an 'or' or a comma): its last word, and
    the words before it up to a boundary word (article, determiner, preposition, verb, clause word)."""
    words = [w for w in piece if w != ","]
    if not words:
        return []
    out = [words[-1]]
    for word in reversed(words[:-1]):
        if len(out) >= MAX_WORDS or word.lower() in _BOUNDARY:
            break
        out.insert(0, word)
    return out


def _forward(piece: list[str]) -> list[str]:
    """The alternative that starts `piece` (the words after an 'or'): leading articles and
    determiners dropped, its first word, and the words after it up to a boundary word or comma."""
    words = list(piece)
    while words and words[0].lower() in _ARTICLES | _DETERMINERS:
        words.pop(0)
    out: list[str] = []
    for word in words:
        if word == "," or (out and (len(out) >= MAX_WORDS or word.lower() in _BOUNDARY)):
            break
        out.append(word)
    return out


def yes_no_form(question: str) -> bool:
    """Whether the question asks yes or no: its first word is an auxiliary verb, 'any' or 'there'."""
    words = [w for w in _tokens(question) if w != ","]
    return bool(words) and words[0].lower() in YES_NO_STARTS


def alternatives(question: str) -> list[str]:
    """The answers a question offers around 'or' / 'vs' / 'versus' (RANK_RULE), best-formed first:
    each alternative, then the others with the head noun the last one carries ("left or right
    side": left side), then their shorter forms (right side: right; patient's right: right).
    Empty when the question names none."""
    tokens = _tokens(question)
    seps = [i for i, t in enumerate(tokens) if _OR.fullmatch(t)]
    if not seps:
        return []
    first, last = seps[0], seps[-1]
    # before the first 'or': comma pieces, the last one right before it ("X, Y, or Z": skip ", ")
    before = tokens[:first]
    while before and before[-1] == ",":
        before.pop()
    pieces: list[list[str]] = [[]]
    for tok in before:
        if tok == ",":
            pieces.append([])
        else:
            pieces[-1].append(tok)
    pieces = [p for p in pieces if p]
    if len(pieces) > 1 and not yes_no_form(question):
        pieces = pieces[1:]  # "Which is the biggest, lung, liver or heart?": the first piece is the question
    left = [alt for alt in (_backward(p) for p in pieces) if alt]
    middle = [alt for alt in (_forward(tokens[a + 1:b]) for a, b in zip(seps, seps[1:])) if alt]
    right = _forward(tokens[last + 1:])
    alts = left + middle + ([right] if right else [])
    if not alts:
        return []
    out = [" ".join(a) for a in alts]
    if right and len(right) > 1:
        head = right[1:]
        out += [" ".join(a + head) for a in left + middle
                if len(a) == 1 and a[0].lower() != head[0].lower() and 1 + len(head) <= MAX_WORDS]
    for a in left:
        out += [" ".join(a[i:]) for i in range(1, len(a))]  # patient's right -> right
    for a in middle + ([right] if right else []):
        out += [" ".join(a[:i]) for i in range(len(a) - 1, 0, -1)]  # right side -> right
    return out


def _unique(texts: list[str]) -> list[str]:
    """First of each answer the scorer would count as the same (pefomed's normalisation), none empty."""
    from pefomed.metrics.vqa import normalize_answer

    seen, out = set(), []
    for text in texts:
        key = normalize_answer(text)
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out


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

    Only the question and its meta decide, never the reference answer. Every English closed
    question gets a non-empty set."""
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
    if sample.answer_type != "closed" or language not in ("en", None):
        return None
    question = sample.question or ""
    alts = alternatives(question)
    if not alts:
        return list(YES_NO)
    return _unique(alts + (list(YES_NO) if yes_no_form(question) else []))


def _accepts_logits_to_keep(model) -> bool:
    base = innermost(model)
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


class Ranker:
    """Log-likelihood of candidate answers after each prompt; `batch_size` rows per forward pass."""

    def __init__(self, model, processor, data, image_root, batch_size: int = 8, blind: bool = False,
                 ablation=None):
        from pefomed.data.collate import Collator
        from pefomed.models.generation import model_device_dtype

        self.model = model
        # train=True: right padding and the labels that mark answer + end token, as in training
        self.collator = Collator(processor, data, image_root, train=True, blind=blind, ablation=ablation)
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
