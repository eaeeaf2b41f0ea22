"""Medical VQA accuracy under named conventions.

- ``exact`` (pefomed's, the default): exact match after pefomed's VQA-style answer normalization,
  a cleaned-up version of the VQA challenge rules (every mark handled by its own neighbours).
- ``pefomed-paper``: the PeFoMed paper's released scorer, string for string: exact match after
  ``MedVQAEval.preprocess_answer`` (github.com/jinlHe/PeFoMed,
  pefomed/common/medvqa_tools/vqa_eval.py), quirks included (see `pefomed_paper_normalize`).
- ``llava-med``: LLaVA-Med's llava/eval/run_eval_batch.py: both strings normalized by its
  glossary.py; closed = the normalized reference is a substring of the normalized prediction;
  open = calculate_f1score's recall, where shared words count with their occurrences in the
  *prediction*.
- ``llava-med-run-eval``: LLaVA-Med's llava/eval/run_eval.py: the same, except that a closed
  prediction must contain "yes" or "no" (as a substring), and a closed row whose prediction does but
  misses the reference is left out of the closed denominator (the script appends nothing for it).
Both are lenient in known ways ("no" matches "normal"; repeated prediction words inflate recall),
which docs/metrics.md spells out; we reproduce them only so numbers can be compared with papers.

Normalization is written here rather than imported: the official VQA evaluation code is a script,
not an installable library, and its rules need small medical additions ("x ray" -> "xray").
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

CONVENTIONS = ("exact", "pefomed-paper", "llava-med", "llava-med-run-eval")
# Conventions whose per-sample score is a 0/1 hit (paired McNemar tests apply to them).
BINARY_CONVENTIONS = ("exact", "pefomed-paper")

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
    """pefomed's VQA correctness (`exact`): equal after normalize_answer."""
    return normalize_answer(prediction) == normalize_answer(reference)


# ---- LLaVA-Med (github.com/microsoft/LLaVA-Med, llava/eval/) -----------------------------------
# Re-written from eval_metrics/glossary.py (normalize_word), eval_metrics/evaluate_metrics.py
# (calculate_f1score) and the closed-question rules of run_eval_batch.py / run_eval.py. Their quirks
# are kept because they are part of the published numbers; docs/metrics.md lists them.
_LLAVA_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                ",", "?", "!")
_LLAVA_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
# glossary.py writes "(?!<=\d)(\.)(?!\d)": a typo for a lookbehind, so only "not followed by a digit"
# is in force; and it passes re.UNICODE (= 32) as `count`, so at most 32 periods go per call.
_LLAVA_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_LLAVA_CONTRACTIONS = {
    # pefomed's table minus "shes", which glossary.py does not have
    **{k: v for k, v in _CONTRACTIONS.items() if k != "shes"}, "couldve": "could've", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "itd've": "it'd've", "it'dve": "it'd've", "let's": "let's", "maam": "ma'am",
    "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock",
    "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "whatll": "what'll", "whatre": "what're", "whatve": "what've",
    "whens": "when's", "whered": "where'd", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wouldve": "would've", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youve": "you've",
}


def _glossary_normalize(text: str) -> str:
    """The VQA-challenge glossary steps that LLaVA-Med's normalize_word and PeFoMed's
    preprocess_answer share, on `text` as given: each mark of the punctuation list is deleted when
    it touches a space anywhere in the string (or when the string has a digit,digit comma
    anywhere), otherwise replaced by a space; periods not followed by a digit are deleted (at most
    32); lowercase; number words zero..ten and "none" -> digits; articles a/an/the dropped;
    apostrophe-less contractions restored; remaining commas deleted. (Lowercasing before or after
    the punctuation steps gives the same string: they only look at marks, spaces and digits.)"""
    out = text
    has_digit_comma = _LLAVA_DIGIT_COMMA.search(text) is not None
    for mark in _LLAVA_PUNCT:
        # the test reads the original string, the replacement the running result (as released)
        if mark + " " in text or " " + mark in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    out = _LLAVA_PERIOD.sub("", out, 32)
    words = [_NUMBER_WORDS.get(w, w) for w in out.lower().split()]
    words = [_LLAVA_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words).replace(",", "")


def llava_normalize(text: str) -> str:
    """LLaVA-Med's normalize_word applied to the lowercased string, as its scripts call it
    (_glossary_normalize's steps)."""
    return _glossary_normalize(str(text).lower())


def llava_closed(prediction: str, reference: str) -> float:
    """run_eval_batch.py's closed hit: the normalized reference is a substring of the normalized
    prediction (so "no" is found in "normal", and an empty reference in everything)."""
    return float(llava_normalize(reference) in llava_normalize(prediction))


def llava_closed_run_eval(prediction: str, reference: str) -> tuple[float, bool]:
    """run_eval.py's closed rule: (hit, counted). With "yes" or "no" somewhere in the normalized
    prediction (a substring test: "normal", "know" qualify) the row is a hit when the reference is a
    substring and is *not counted at all* otherwise (the script appends nothing in that branch);
    without yes/no it counts as a miss."""
    pred, ref = llava_normalize(prediction), llava_normalize(reference)
    if "yes" in pred or "no" in pred:
        return (1.0, True) if ref in pred else (0.0, False)
    return 0.0, True


def llava_open_recall(prediction: str, reference: str) -> float:
    """LLaVA-Med's open-question recall (calculate_f1score's recall; both scripts): words shared by
    prediction and reference count with their number of occurrences *in the prediction*, reference
    words missing from the prediction with theirs in the reference: tp / (tp + fn). The scripts
    normalize both strings before the call and calculate_f1score normalizes again; kept."""
    pred = llava_normalize(llava_normalize(prediction)).split()
    ref = llava_normalize(llava_normalize(reference)).split()
    if not pred or not ref:
        return 0.0
    pred_counts, ref_counts = Counter(pred), Counter(ref)
    tp = sum(c for w, c in pred_counts.items() if w in ref_counts)
    fn = sum(c for w, c in ref_counts.items() if w not in pred_counts)
    return tp / (tp + fn) if tp else 0.0


# ---- PeFoMed's released scorer (github.com/jinlHe/PeFoMed) ------------------------------------------
# Re-written from pefomed/common/medvqa_tools/vqa_eval.py, MedVQAEval.preprocess_answer, which the
# paper's VQA-RAD / SLAKE / PathVQA accuracies were computed with. Its punctuation list, period rule,
# number words and contraction table are those of LLaVA-Med's glossary.py (the VQA challenge's), so
# the tables above are shared; what differs is the order and the "x ray" replacement.


def pefomed_paper_normalize(text: str) -> str:
    """MedVQAEval.preprocess_answer, step for step, quirks kept because the paper's numbers have them:

    1. punctuation, on the text as given (before lowercasing): each mark of
       ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted everywhere when it touches a space
       *anywhere* in the string, or when the string has a digit,digit comma anywhere; otherwise every
       occurrence becomes a space. So "jaundice,weight" -> "jaundice weight" but
       "fever, jaundice,weight" -> "fever jaundiceweight", and "a,b 1,2" -> "ab 12";
    2. marks outside that list stay: "5%" stays "5%", "~3" stays "~3", "*", "#", ":" and "'" stay;
    3. periods not followed by a digit are deleted, at most 32 (re.UNICODE passed as the count);
    4. lowercase, split on whitespace; zero..ten and "none" -> digits; a/an/the dropped;
       apostrophe-less contractions restored;
    5. joined with single spaces; commas removed; then "x ray" -> "xray" as a plain substring
       replacement, so "max ray" -> "maxray" too ("x-ray" -> "x ray" in step 1 -> "xray").
    """
    # the released "\n"/"\t" replacements come after the split and join, where none are left
    return _glossary_normalize(str(text)).replace("x ray", "xray")


def pefomed_paper_match(prediction: str, reference: str) -> bool:
    """The paper's VQA correctness: equal after pefomed_paper_normalize."""
    return pefomed_paper_normalize(prediction) == pefomed_paper_normalize(reference)


def first_yes_no(prediction: str) -> str | None:
    """The first 'yes' or 'no' word of the prediction, or None."""
    for word in normalize_answer(prediction).split():
        if word in ("yes", "no"):
            return word
    return None


def per_sample_scores(predictions: list[str], references: list[str], answer_types: list[str | None],
                      convention: str = "exact") -> np.ndarray:
    """A score in [0, 1] per sample under the convention. Rows without answer_type count as open
    for the llava-med conventions unless the reference is yes/no (LLaVA-Med's closed set is yes/no
    questions). For llava-med-run-eval, rows that script drops get 0 here and False in
    `counted_rows`: the closed accuracy is over the counted rows only."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown VQA convention {convention!r}; choose from {CONVENTIONS}")
    scores = np.zeros(len(predictions))
    for i, (pred, ref, kind) in enumerate(zip(predictions, references, answer_types)):
        if convention == "exact":
            scores[i] = float(exact_match(pred, ref))
        elif convention == "pefomed-paper":
            scores[i] = float(pefomed_paper_match(pred, ref))
        elif answer_type_of(ref, kind) == "open":
            scores[i] = llava_open_recall(pred, ref)
        elif convention == "llava-med":
            scores[i] = llava_closed(pred, ref)
        else:
            scores[i] = llava_closed_run_eval(pred, ref)[0]
    return scores


def counted_rows(predictions: list[str], references: list[str], answer_types: list[str | None],
                 convention: str = "exact") -> np.ndarray:
    """Which rows enter the denominators: all of them, except under llava-med-run-eval the closed
    rows whose prediction contains "yes"/"no" but not the reference (run_eval.py appends no score
    for them, so its yes/no accuracy is hits / (hits + predictions without yes/no))."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown VQA convention {convention!r}; choose from {CONVENTIONS}")
    keep = np.ones(len(predictions), dtype=bool)
    if convention == "llava-med-run-eval":
        for i, (pred, ref, kind) in enumerate(zip(predictions, references, answer_types)):
            if answer_type_of(ref, kind) == "closed":
                keep[i] = llava_closed_run_eval(pred, ref)[1]
    return keep


def answer_type_of(reference: str, answer_type: str | None) -> str:
    """The row's answer_type, or, when unknown, closed for yes/no references and open otherwise."""
    if answer_type in ("closed", "open"):
        return answer_type
    return "closed" if normalize_answer(reference) in ("yes", "no") else "open"
