"""Clinical efficacy (CE): a rule-based, offline, CheXpert-style labeler and CE precision/recall/F1.

The labeler reads a report and assigns each of the 14 CheXpert observations positive (1),
negative (0), uncertain (-1) or not mentioned (None) from mention phrases plus negation and
uncertainty cues with a scope (the cue's clause, at most SCOPE words away). It follows the
CheXpert labeler's design (mention -> uncertainty -> negation -> aggregate, "No Finding" when no
pathology is positive or uncertain) but not its exact rules (which use a dependency parser and
hundreds of patterns), and nothing here is CheXbert (a neural labeler). CE numbers from this
labeler are therefore NOT comparable with papers that report CheXbert or CheXpert-labeler CE;
compare runs with each other under this labeler only. Written by hand because no maintained
offline PyPI package provides it (chexpert-labeler needs NegBio, a Bllip parser and downloads).
"""

from __future__ import annotations

import re

import numpy as np

from pefomed.score.rows import Row
from pefomed.score.stats import MetricSpec

OBSERVATIONS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
FIVE = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
SCOPE = 10  # words a cue reaches

_MENTIONS = {
    "Enlarged Cardiomediastinum": [r"enlarged cardiomediastin\w*", r"(widen\w*|enlarged) mediastin\w*",
                                   r"mediastin\w* (is |are )?(widen\w*|enlarged)",
                                   r"cardiomediastinal silhouette (is |are )?(widen\w*|enlarged)"],
    "Cardiomegaly": [r"cardiomegaly", r"enlarged (heart|cardiac silhouette)", r"cardiac enlargement",
                     r"heart( size)? (is |appears )?(\w+ )?enlarged"],
    "Lung Lesion": [r"nodul\w*", r"\bmass(es)?\b", r"\blesions?\b", r"\btumou?rs?\b", r"neoplasm\w*", r"\bcysts?\b"],
    "Lung Opacity": [r"opacit\w*", r"infiltrat\w*", r"\bdensit(y|ies)\b", r"haziness", r"airspace disease"],
    "Edema": [r"\bedema\b", r"(vascular|pulmonary) congestion", r"heart failure", r"\bchf\b"],
    "Consolidation": [r"consolidat\w*"],
    "Pneumonia": [r"pneumoni\w*", r"\binfection\b", r"infectious process"],
    "Atelectasis": [r"atelecta\w*", r"\bcollapse\b"],
    "Pneumothorax": [r"pneumothora\w*"],
    "Pleural Effusion": [r"(?<!pericardial )\beffusions?\b", r"pleural fluid"],
    "Pleural Other": [r"pleural thickening", r"fibrothorax", r"pleural scar\w*"],
    "Fracture": [r"fractur\w*"],
    "Support Devices": [r"\b(et|endotracheal|ng|nasogastric|chest|feeding|tracheostomy) tube\b", r"\bpicc\b",
                        r"\bcatheter\b", r"pacemaker", r"\b(central|picc) line\b", r"\bstent\b", r"sternotomy wires?",
                        r"\bdrain\b", r"surgical clips?", r"\bdevices?\b"],
}
# Phrases that state an observation is absent without a negation word.
_NEGATIVE_PHRASES = {
    "Cardiomegaly": [r"heart size (is )?(within )?normal", r"normal (heart|cardiac) size",
                     r"(heart|cardiac silhouette) (is )?normal in size", r"normal cardiac silhouette"],
    "Enlarged Cardiomediastinum": [r"(cardio)?mediastinal (contours?|silhouettes?) (is |are )?(within normal limits|normal|unremarkable)"],
}
_UNCERTAIN_PRE = re.compile(r"\b(possible|possibly|cannot (be )?exclude[ds]?|can ?not (be )?exclude[ds]?|"
                            r"may (represent|be|reflect)|might|could (represent|be)|questionabl[ey]|question of|"
                            r"suspicious for|suspect\w*|concern(ing)? for|suggest\w*|probabl[ey]|likely|"
                            r"differential|versus|vs\.?|cannot rule out|rule out|r/o|equivocal|borderline)\b")
_UNCERTAIN_POST = re.compile(r"(\?|\b(is|are) (possible|suspected|likely|not excluded)|\bnot (be )?excluded|"
                             r"\bcannot be (excluded|ruled out)|\bcan ?not be (excluded|ruled out)|\bnot ruled out)")
_NEGATION_PRE = re.compile(r"\b(no|not|without|free of|negative for|resolved|resolution of|absence of|"
                           r"absent|clear of|never|nor|neither)\b")
_NEGATION_POST = re.compile(r"\b((has |have )?(resolved|cleared)|(is|are) (absent|not (seen|present|identified))|"
                            r"no longer (seen|present|visible))\b")
# A cue's scope ends at these words or marks (a new clause).
_TERMINATOR = re.compile(r"(;|:|\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bexcept\b|\bwhich\b|"
                         r"\bthere (is|are)\b|\bwith\b|\bremains?\b|\bpersists?\b|\bnew\b)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_COMPILED = {obs: [re.compile(p) for p in pats] for obs, pats in _MENTIONS.items()}
_COMPILED_NEG = {obs: [re.compile(p) for p in pats] for obs, pats in _NEGATIVE_PHRASES.items()}


def _clause_before(text: str) -> str:
    parts = _TERMINATOR.split(text)
    last = parts[-1] if parts else text
    return " ".join(last.split()[-SCOPE:])


def _clause_after(text: str) -> str:
    first = _TERMINATOR.split(text)[0]
    return " ".join(first.split()[:SCOPE]) + ("?" if first.strip().startswith("?") else "")


def classify_mention(sentence: str, start: int, end: int) -> int:
    """1 positive, 0 negative, -1 uncertain, for the mention at sentence[start:end]."""
    before = _clause_before(sentence[:start])
    after = _clause_after(sentence[end:])
    if _UNCERTAIN_PRE.search(before) or _UNCERTAIN_POST.search(after):
        return -1
    if _NEGATION_PRE.search(before) or _NEGATION_POST.search(after):
        return 0
    return 1


def label_report(text: str) -> dict[str, int | None]:
    """CheXpert-style labels of one report: {observation: 1 | 0 | -1 | None}."""
    labels: dict[str, int | None] = {obs: None for obs in OBSERVATIONS}
    for sentence in _SENTENCE.split(text.lower()):
        sentence = sentence.strip()
        if not sentence:
            continue
        for obs, patterns in _COMPILED_NEG.items():
            if any(p.search(sentence) for p in patterns) and labels[obs] is None:
                labels[obs] = 0
        for obs, patterns in _COMPILED.items():
            for pattern in patterns:
                for m in pattern.finditer(sentence):
                    value = classify_mention(sentence, m.start(), m.end())
                    labels[obs] = _merge(labels[obs], value)
    pathologies = [o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices")]
    if not any(labels[o] in (1, -1) for o in pathologies):
        labels["No Finding"] = 1
    return labels


def _merge(old: int | None, new: int) -> int:
    # CheXpert aggregation: positive beats uncertain beats negative across mentions.
    rank = {None: -1, 0: 0, -1: 1, 1: 2}
    return new if rank[new] > rank[old] else old  # type: ignore[return-value]


def binarize(value: int | None, uncertain: str) -> float:
    """1/0 for a label under the uncertain policy; NaN for 'ignore' on uncertain labels."""
    if value == 1:
        return 1.0
    if value == -1:
        return {"positive": 1.0, "negative": 0.0, "ignore": float("nan")}[uncertain]
    return 0.0


def label_matrix(texts: list[str], uncertain: str, observations=OBSERVATIONS) -> np.ndarray:
    return np.array([[binarize(label_report(t)[o], uncertain) for o in observations] for t in texts],
                    dtype=np.float64).reshape(len(texts), len(observations))


def confusion(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-sample, per-label [tp, fp, fn] (n, L, 3); pairs where either side is NaN (ignored
    uncertain) count nowhere."""
    keep = ~(np.isnan(pred) | np.isnan(ref))
    p = np.nan_to_num(pred) * keep
    r = np.nan_to_num(ref) * keep
    return np.stack([p * r, p * (1 - r), (1 - p) * r], axis=-1)


def _prf(tp, fp, fn):
    # zero_division = 0, as sklearn's precision_recall_fscore_support(zero_division=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        rec = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    return prec, rec, f1


def _micro(which: int):
    def fn(sums):
        s = sums.reshape(*sums.shape[:-1], -1, 3).sum(axis=-2)
        return _prf(s[..., 0], s[..., 1], s[..., 2])[which]
    return fn


def _macro(which: int):
    def fn(sums):
        s = sums.reshape(*sums.shape[:-1], -1, 3)
        return _prf(s[..., 0], s[..., 1], s[..., 2])[which].mean(axis=-1)
    return fn


def clinical_metrics(rows: list[Row], uncertain: str = "positive") -> list[MetricSpec]:
    mask = np.array([r.task == "report" for r in rows])
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    pred = label_matrix([rows[i].prediction for i in idx], uncertain)
    ref = label_matrix([rows[i].reference for i in idx], uncertain)
    conf = confusion(pred, ref)  # (n, 14, 3)
    specs = []
    for suffix, obs in (("14", OBSERVATIONS), ("5", FIVE)):
        cols = [OBSERVATIONS.index(o) for o in obs]
        stats = np.zeros((len(rows), len(cols) * 3))
        stats[idx] = conf[:, cols, :].reshape(idx.size, -1)
        for avg, maker in (("micro", _micro), ("macro", _macro)):
            for which, name in enumerate(("precision", "recall", "f1")):
                specs.append(MetricSpec("clinical", f"{name}_{avg}/{suffix}", stats, maker(which), n=int(idx.size),
                                        extra={"uncertain": uncertain}))
    return specs
