"""Medical VQA accuracy under two named conventions.

- ``exact`` (PeFoMed's, the default): exact match after VQA-style answer normalization.
- ``llava-med``: LLaVA-Med's evaluation: closed = the reference string occurs in the prediction;
  open = recall of the reference's tokens in the prediction. Both are lenient in known ways
  (repeated reference words inflate recall; substring matching lets "no" match "normal"), which
  docs/metrics.md spells out; we reproduce them only so numbers can be compared with papers.

Normalization is written here rather than imported: the official VQA evaluation code is a script,
not an installable library, and its rules need small medical additions ("x ray" -> "xray").
"""

from __future__ import annotations

import re

import numpy as np

CONVENTIONS = ("exact", "llava-med")

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
# Apostrophe-less spellings -> the contracted form, so "dont" and "don't" compare equal.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldnt": "couldn't", "didnt": "didn't",
    "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't", "havent": "haven't",
    "isnt": "isn't", "itd": "it'd", "itll": "it'll", "shouldnt": "shouldn't", "thats": "that's",
    "theres": "there's", "wasnt": "wasn't", "werent": "weren't", "wont": "won't", "wouldnt": "wouldn't",
    "youre": "you're", "whats": "what's", "wheres": "where's", "hes": "he's", "shes": "she's",
}
# Punctuation that never carries meaning in a short answer. The apostrophe is kept (contractions,
# possessives) and so are '.' and ',' inside numbers ("2.5", "1,000" handled below).
_PUNCT = ";/[]\"{}()=+\\_-><@`,?!:*#%&|~^$"
_COMMA_IN_NUMBER = re.compile(r"(?<=\d),(?=\d{3}\b)")
_PERIOD_NOT_DECIMAL = re.compile(r"(?<!\d)\.|\.(?!\d)")
_XRAY = re.compile(r"\bx\s*ray")


def normalize_answer(text: str) -> str:
    """Lowercase; drop punctuation (a mark touching a space is deleted, one inside a word splits
    it: "left-sided" -> "left sided"); number words -> digits; drop articles; restore contractions;
    "x ray"/"x-ray" -> "xray"; collapse whitespace."""
    text = " ".join(str(text).lower().split())
    text = _COMMA_IN_NUMBER.sub("", text)
    text = _PERIOD_NOT_DECIMAL.sub("", text)
    out = []
    for i, ch in enumerate(text):
        if ch in _PUNCT:
            prev = text[i - 1] if i > 0 else " "
            nxt = text[i + 1] if i + 1 < len(text) else " "
            out.append("" if prev == " " or nxt == " " else " ")
        else:
            out.append(ch)
    text = _XRAY.sub("xray", "".join(out))
    words = []
    for word in text.split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def exact_match(prediction: str, reference: str) -> bool:
    """PeFoMed's VQA correctness: equal after normalize_answer."""
    return normalize_answer(prediction) == normalize_answer(reference)


def _llava_words(text: str) -> list[str]:
    # LLaVA-Med lowercases and strips punctuation before comparing; no number/article rules.
    return re.sub(r"[^\w\s']", " ", str(text).lower()).split()


def llava_closed(prediction: str, reference: str) -> float:
    """1.0 when the normalized reference occurs anywhere in the prediction (substring match)."""
    ref = " ".join(_llava_words(reference))
    return float(bool(ref) and ref in " ".join(_llava_words(prediction)))


def llava_open_recall(prediction: str, reference: str) -> float:
    """Share of reference tokens (counted with repetition) present in the prediction."""
    ref = _llava_words(reference)
    if not ref:
        return 0.0
    pred = set(_llava_words(prediction))
    return sum(word in pred for word in ref) / len(ref)


def first_yes_no(prediction: str) -> str | None:
    """The first 'yes' or 'no' word of the prediction, or None."""
    for word in normalize_answer(prediction).split():
        if word in ("yes", "no"):
            return word
    return None


def per_sample_scores(predictions: list[str], references: list[str], answer_types: list[str | None],
                      convention: str = "exact") -> np.ndarray:
    """A score in [0, 1] per sample under the convention. Rows without answer_type count as open
    for llava-med unless the reference is yes/no (LLaVA-Med's closed set is yes/no questions)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown VQA convention {convention!r}; choose from {CONVENTIONS}")
    scores = np.zeros(len(predictions))
    for i, (pred, ref, kind) in enumerate(zip(predictions, references, answer_types)):
        if convention == "exact":
            scores[i] = float(exact_match(pred, ref))
        elif answer_type_of(ref, kind) == "closed":
            scores[i] = llava_closed(pred, ref)
        else:
            scores[i] = llava_open_recall(pred, ref)
    return scores


def answer_type_of(reference: str, answer_type: str | None) -> str:
    """The row's answer_type, or, when unknown, closed for yes/no references and open otherwise."""
    if answer_type in ("closed", "open"):
        return answer_type
    return "closed" if normalize_answer(reference) in ("yes", "no") else "open"
