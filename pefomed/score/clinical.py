"""Clinical efficacy (CE): a rule-based, offline, CheXpert-style labeler and CE precision/recall/F1.

The labeler follows the stages of the CheXpert labeler (Irvin et al. 2019,
github stanfordmlgroup/chexpert-labeler) with our own phrase tables (clinical_phrases.py) and a
sentence-level rule engine in place of its NegBio dependency-graph patterns (no parser runs
offline here):

1. clean: lower-case, "and/or" -> "or", "a/b" -> "a or b", "r/o" -> "rule out"; split sentences.
2. extract: every match of an observation's mention phrases, minus matches that overlap one of its
   unmention phrases ("pericardial effusion" is no pleural effusion, "over the heart" no heart).
   Mentions of findings outside the 14 classes (emphysema, granuloma, ...) are extracted too: they
   only decide "No Finding".
3. classify each mention, in the CheXpert order: pre-negation uncertainty ("cannot exclude X",
   "no new X", "X is not excluded"), then negation ("no X", "without X", "X has resolved",
   "normal X"), then post-negation uncertainty ("possible X", "may represent X", "X?", "X or Y",
   "stable cardiac silhouette", vascular congestion); otherwise positive. A cue *before* the
   mention reaches it when both lie in the same scope (see `_scope_before`); a cue *after* it must
   lie in the mention's predicate (see `_predicate`).
4. aggregate per report as the CheXpert labeler does: one mention's label, else negative and
   uncertain -> uncertain, negative and positive -> positive, uncertain and positive -> positive
   (checked in that order, so all three -> uncertain); a positive or uncertain "heart failure"/"CHF"
   adds an uncertain Cardiomegaly; "No Finding" is positive when no mention other than a support
   device is positive or uncertain, else not mentioned.

It is NOT CheXbert (a neural labeler) and does not reproduce the CheXpert labeler's parser, so CE
numbers from it are not those of papers: compare runs with each other under this labeler.
Agreement with hand labels: tests/score/test_clinical_labeler.py and docs/metrics.md.

The default uncertain policy is R2Gen's `compute_ce.py` (the protocol most report-generation
papers follow): uncertain (-1) and not mentioned count as negative (0).
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import numpy as np

from pefomed.errors import UserError
from pefomed.score import clinical_phrases as P
from pefomed.score.rows import Row
from pefomed.score.stats import MetricSpec

OBSERVATIONS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
FIVE = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
UNCERTAIN_POLICIES = ("negative", "positive", "ignore")
DEFAULT_UNCERTAIN = "negative"  # R2Gen compute_ce: -1 -> 0, blank -> 0
OTHER = "Other finding"  # mentions outside the 14 classes; they only decide "No Finding"
SCOPE_WORDS = 15  # a cue before a mention reaches at most this many words (long "no A, B, C or D" lists)
SUBJECT_WORDS = 8  # words between a mention and its verb ("effusion at the right base has resolved")
BARE_PREDICATE_WORDS = 5  # verbless predicate ("heart size normal", "pneumothorax resolved")


def _alternation(patterns) -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_MENTION_RX = {obs: _alternation(pats) for obs, pats in P.MENTIONS.items()}
_MENTION_RX[OTHER] = _alternation(P.OTHER_FINDINGS)
_UNMENTION_RX = {obs: _alternation(pats) for obs, pats in P.UNMENTIONS.items()}


def _literal(pattern: str) -> str | None:
    """Text every match of `pattern` contains (its leading literal letters), or None if it has none.
    Testing a sentence for an observation's literals is cheaper than running its phrase regex, so
    the regex only runs on sentences that hold one of them."""
    body = pattern.removeprefix(r"\b")
    m = re.match(r"[a-z ]+(?:-(?![?*]))?[a-z ]*", body)
    if not m:
        return None
    lit = m.group(0)
    if body[m.end():m.end() + 1] in ("?", "*", "{"):  # the last letter is optional
        lit = lit[:-1]
    return lit if len(lit) >= 3 else None


def _literals(patterns) -> re.Pattern | None:
    lits = [_literal(p) for p in patterns]
    return None if any(lit is None for lit in lits) else re.compile("|".join(map(re.escape, lits)))


_MENTION_LITERALS = {obs: _literals(P.MENTIONS.get(obs, P.OTHER_FINDINGS)) for obs in _MENTION_RX}
_PRE_BEFORE = _alternation(P.PRE_UNCERTAIN_BEFORE)
_PRE_AFTER = _alternation(P.PRE_UNCERTAIN_AFTER)
_NEG_BEFORE = _alternation(P.NEGATION_BEFORE)
_NEG_AFTER = _alternation(P.NEGATION_AFTER)
_POST_BEFORE = _alternation(P.POST_UNCERTAIN_BEFORE)
_POST_AFTER = _alternation(P.POST_UNCERTAIN_AFTER)
_NORMAL = re.compile(P.NORMAL)
_PREDICATIVE = re.compile(P.PREDICATIVE_BEFORE_NORMAL)
_NORMAL_GAP_BLOCK = re.compile(P.NORMAL_GAP_BLOCK)
_STABLE_BEFORE = re.compile(P.STABLE_BEFORE)
_STABLE_AFTER = re.compile(P.STABLE_AFTER)
_STABLE_GAP = re.compile(P.STABLE_GAP)
_ANATOMIC = re.compile(P.ANATOMIC)
_UNCERTAIN_EDEMA = re.compile(P.UNCERTAIN_EDEMA)
_HEART_FAILURE = re.compile(P.HEART_FAILURE)

# Where the scope of a cue before a mention ends: a new clause. Every match cuts *after* itself;
# the zero-width ones keep the next cue ("..., no effusion": "no" starts a new scope).
_SCOPE_BREAK = re.compile(
    r"[;:]|\b(?:but|however|although|though|except|whereas|while|which|that|aside from|apart from|otherwise|"
    r"with|there (?:is|are|was|were|has|have)|and there)\b"
    r"|(?=\bwithout\b)"
    r"|\band (?=(?:the|this|these|it|is|are)\b)"
    r"|,\s*(?=(?:no|without|there|possible|possibly|probable|probably|cannot|may|the|this|likely|new|"
    r"unchanged|stable)\b)")
# A clause whose verb came before the mention is finished at its next "," or "and"
# ("no effusion is seen and heart size is enlarged").
_VERB = re.compile(r"\b(?:is|are|was|were|has|have|had|appears?|remains?|seen|noted|identified)\b")
_CLAUSE_JOIN = re.compile(r",|\band\b")
# Where the text after a mention stops being about it.
_AFTER_BREAK = re.compile(r"[;:.]|\b(?:but|however|although|though|except|whereas|while|which|that|with|without|"
                          r"there)\b")
_PREDICATE_VERB = re.compile(r"\b(?:is|are|was|were|be|been|appears?|appeared|remains?|remained|seems?|looks?|"
                             r"has|have|had|cannot|can ?not|can't|could|may|might|now)\b")
_PREDICATE_END = re.compile(r",|\band\b|\bor\b")
# Two mentions joined by "or"/"versus" (possibly in a comma list): both uncertain.
# The words between may only be modifiers ("atelectasis or early pneumonia"), not verbs or cues
# ("opacity could reflect atelectasis or pneumonia": the opacity is not in the list).
_LINK_GAP = re.compile(r"\s*,?\s*(?:(?:or|versus|vs\.?)\s+)?"
                       r"(?:(?!(?:with|without|and|is|are|was|were|be|of|in|at|to|from|for|no|not|may|might|could|"
                       r"can|would|which|that|likely|possibly|probably|reflect\w*|represent\w*|suggest\w*|"
                       r"concerning|suspicious|worrisome|consistent|compatible|due)\b)[\w-]+\s+){0,3}")
_OR = re.compile(r"\b(?:or|versus|vs)\b")


class Mention(NamedTuple):
    observation: str
    start: int
    end: int
    text: str


def clean(text: str) -> str:
    """The CheXpert labeler's cleaning, plus "r/o" -> "rule out" (it would read "r or o")."""
    t = text.lower().replace("r/o ", "rule out ").replace("and/or", "or")
    t = re.sub(r"(?<=[a-z])/(?=[a-z])", " or ", t)
    t = re.sub(r"\.{2,}", ".", t)
    t = re.sub(r"([,;:])(?=\S)", r"\1 ", t)
    return re.sub(r"\.(?=[a-z])", ". ", t)  # "effusion.no" -> two sentences; "2.5 cm" stays


_SENTENCE = re.compile(r"\s*\n\s*|(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    return [s for s in (" ".join(part.split()) for part in _SENTENCE.split(clean(text))) if s]


def mentions(sentence: str) -> list[Mention]:
    """Stage 2: all mentions in a cleaned sentence, in text order."""
    found = []
    for obs, rx in _MENTION_RX.items():
        lits = _MENTION_LITERALS[obs]
        if lits is not None and not lits.search(sentence):
            continue
        blocked = None
        for m in rx.finditer(sentence):
            s, e = m.span()
            if blocked is None:
                unmention = _UNMENTION_RX.get(obs)
                blocked = [u.span() for u in unmention.finditer(sentence)] if unmention else []
            if any(s < be and e > bs for bs, be in blocked):
                continue
            found.append(Mention(obs, s, e, m.group(0)))
    found.sort(key=lambda m: (m.start, m.end))
    return found


def _scope_before(sentence: str, start: int) -> str:
    """The text before a mention that a cue must lie in to reach it: back to the last clause
    break, at most SCOPE_WORDS words."""
    left = sentence[:start]
    cut = 0
    for m in _SCOPE_BREAK.finditer(left):
        cut = m.end()
    left = left[cut:]
    verbs = list(_VERB.finditer(left))
    if verbs:
        joins = list(_CLAUSE_JOIN.finditer(left, verbs[-1].end()))
        # ...unless a cue follows the verb ("lungs are free of consolidation, effusion and ...").
        if joins and not _any_cue(left[verbs[-1].end():joins[0].start()]):
            left = left[joins[-1].end():]
    words = left.split()
    return " ".join(words[-SCOPE_WORDS:]) + " " if words else ""


def _any_cue(text: str) -> bool:
    return any(rx.search(text) for rx in (_PRE_BEFORE, _NEG_BEFORE, _POST_BEFORE, _NORMAL))


def _predicate(sentence: str, end: int) -> str:
    """What the sentence says about the mention after it: from its verb ("is not enlarged", "has
    resolved", "cannot be excluded") to the next ",", "and" or "or"; without a verb, the next few
    words ("normal", "resolved", "?")."""
    right = sentence[end:]
    stop = _AFTER_BREAK.search(right)
    if stop:
        right = right[:stop.start()]
    verb = _PREDICATE_VERB.search(right)
    if verb and len(right[:verb.start()].split()) <= SUBJECT_WORDS:
        tail = right[verb.start():]
        stop = _PREDICATE_END.search(tail, verb.end() - verb.start())
        return tail[:stop.start()] if stop else tail
    stop = _PREDICATE_END.search(right)
    bare = right[:stop.start()] if stop else right
    return " ".join(bare.split()[:BARE_PREDICATE_WORDS]) + ("?" if bare.rstrip().endswith("?") else "")


def _normal_before(scope: str) -> bool:
    """"normal"/"unremarkable" modifying the mention ("normal heart size", "unremarkable
    cardiomediastinal silhouette and hila"), not the predicate of another subject."""
    for m in _NORMAL.finditer(scope):
        if _PREDICATIVE.search(scope[:m.start()]):
            continue
        gap = scope[m.end():]
        if len(gap.split()) <= 6 and not _NORMAL_GAP_BLOCK.search(gap):
            return True
    return False


def _stable_before(scope: str) -> bool:
    m = None
    for m in _STABLE_BEFORE.finditer(scope):
        pass
    if m is None:
        return False
    gap = scope[m.end():]
    return "enlarg" not in gap and (len(gap.split()) <= 2 or _STABLE_GAP.fullmatch(gap) is not None
                                    or re.fullmatch(r"\s*appearance of (?:the )?", gap) is not None)


def classify(sentence: str, mention: Mention, in_or_list: bool = False) -> int:
    """Stage 3 for one mention: 1 positive, 0 negative, -1 uncertain."""
    before = _scope_before(sentence, mention.start)
    after = _predicate(sentence, mention.end)
    if _PRE_BEFORE.search(before) or _PRE_AFTER.search(after):
        return -1
    if _NEG_BEFORE.search(before) or _NEG_AFTER.search(after) or _normal_before(before):
        return 0
    if _POST_BEFORE.search(before) or _POST_AFTER.search(after) or in_or_list:
        return -1
    anatomic = mention.observation in ("Cardiomegaly", "Enlarged Cardiomediastinum") and _ANATOMIC.search(mention.text)
    if anatomic and (_stable_before(before) or _STABLE_AFTER.search(after)):
        return -1
    if mention.observation == "Edema" and _UNCERTAIN_EDEMA.fullmatch(mention.text):
        return -1
    return 1


def _or_lists(sentence: str, found: list[Mention]) -> set[int]:
    """Indices of mentions in a list joined by "or"/"versus" ("atelectasis or pneumonia",
    "atelectasis, aspiration, or infection")."""
    out: set[int] = set()
    group, has_or, end = [0], False, found[0].end if found else 0
    for i in range(1, len(found)):
        m = found[i]
        if m.start < end:  # overlapping mentions ("nodular opacity") share a place in the list
            group.append(i)
            end = max(end, m.end)
            continue
        gap = sentence[end:m.start]
        # An opacity before a comma is the finding a differential explains ("bibasilar
        # opacities, atelectasis or pneumonia"), not one of the alternatives.
        comma_after_opacity = found[i - 1].observation == "Lung Opacity" and not _OR.search(gap)
        if _LINK_GAP.fullmatch(gap) and not comma_after_opacity:
            group.append(i)
            has_or = has_or or bool(_OR.search(gap))
        else:
            if has_or:
                out.update(group)
            group, has_or = [i], False
        end = max(end, m.end)
    if has_or:
        out.update(group)
    return out


@functools.lru_cache(maxsize=1 << 16)
def label_sentence(sentence: str) -> tuple[tuple[str, int, str], ...]:
    """(observation, label, mention text) for each mention of a cleaned sentence; cached because
    generated reports repeat the same sentences."""
    found = mentions(sentence)
    listed = _or_lists(sentence, found)
    return tuple((m.observation, classify(sentence, m, i in listed), m.text) for i, m in enumerate(found))


def _aggregate(labels: list[int]) -> int:
    # The CheXpert labeler's Aggregator, in its order.
    if len(set(labels)) == 1:
        return labels[0]
    if 0 in labels and -1 in labels:
        return -1
    return 1


@functools.lru_cache(maxsize=1 << 14)
def _label_report(text: str) -> tuple[int | None, ...]:
    per_obs: dict[str, list[int]] = {}
    no_finding = True
    for sentence in sentences(text):
        for obs, label, mention_text in label_sentence(sentence):
            if label != 0 and obs != "Support Devices":
                no_finding = False
            if obs == OTHER:
                continue
            if label != 0 and obs == "Edema" and _HEART_FAILURE.fullmatch(mention_text):
                per_obs.setdefault("Cardiomegaly", []).append(-1)
            per_obs.setdefault(obs, []).append(label)
    if no_finding:
        per_obs["No Finding"] = [1]
    return tuple(_aggregate(per_obs[o]) if o in per_obs else None for o in OBSERVATIONS)


def label_report(text: str) -> dict[str, int | None]:
    """CheXpert-style labels of one report: {observation: 1 | 0 | -1 | None (not mentioned)}."""
    return dict(zip(OBSERVATIONS, _label_report(text)))


def binarize(value: int | None, uncertain: str = DEFAULT_UNCERTAIN) -> float:
    """1/0 for a label under the uncertain policy; NaN for 'ignore' on uncertain labels."""
    if value == 1:
        return 1.0
    if value == -1:
        return {"positive": 1.0, "negative": 0.0, "ignore": float("nan")}[uncertain]
    return 0.0


def label_matrix(texts: list[str], uncertain: str = DEFAULT_UNCERTAIN, observations=OBSERVATIONS,
                 progress: str | None = None) -> np.ndarray:
    """(reports, observations) binarized labels; `progress`: a progress bar with this title."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise UserError(f"uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}, got {uncertain!r}")
    cols = [OBSERVATIONS.index(o) for o in observations]
    items = texts
    if progress:
        from pefomed.console import track

        items = track(texts, progress)
    # each report labelled once (its distinct sentences once across the corpus: label_sentence's cache)
    labels = [_label_report(t) for t in items]
    return np.array([[binarize(row[c], uncertain) for c in cols] for row in labels],
                    dtype=np.float64).reshape(len(texts), len(observations))


def confusion(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-sample, per-label [tp, fp, fn] (n, L, 3); pairs where either side is NaN (ignored
    uncertain) count nowhere."""
    keep = ~(np.isnan(pred) | np.isnan(ref))
    p = np.nan_to_num(pred) * keep
    r = np.nan_to_num(ref) * keep
    return np.stack([p * r, p * (1 - r), (1 - p) * r], axis=-1)


def precision_recall_f1(tp, fp, fn):
    """Precision, recall, F1 from counts (arrays); also F1-CheXbert's (pefomed.score.report_models)."""
    # zero_division = 0, as sklearn's precision_recall_fscore_support(zero_division=0) and classification_report
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        rec = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    return prec, rec, f1


def _labels(sums, cols):
    """(..., labels, 3) [tp, fp, fn] sums of the labels `cols` (None: all) from (..., L * 3)."""
    s = sums.reshape(*sums.shape[:-1], -1, 3)
    return s if cols is None else s[..., cols, :]


def _micro(which: int, cols=None):
    def fn(sums):
        s = _labels(sums, cols).sum(axis=-2)
        return precision_recall_f1(s[..., 0], s[..., 1], s[..., 2])[which]
    return fn


def _macro(which: int, cols=None):
    def fn(sums):
        s = _labels(sums, cols)
        return precision_recall_f1(s[..., 0], s[..., 1], s[..., 2])[which].mean(axis=-1)
    return fn


def _counts(conf: np.ndarray) -> dict[str, int]:
    """Corpus TP/FP/FN of a (n, [L,] 3) confusion block; support = reference positives (TP + FN)."""
    tp, fp, fn = (round(float(x)) for x in conf.reshape(-1, 3).sum(axis=0))
    return {"tp": tp, "fp": fp, "fn": fn, "support": tp + fn}


def clinical_metrics(rows: list[Row], uncertain: str = DEFAULT_UNCERTAIN, progress: bool = False) -> list[MetricSpec]:
    """CE specs over the report rows: precision/recall/F1 micro and macro over the 14 labels
    (`/14`) and the 5 (`/5`), and per label (`precision/<label>`, ...), each with its TP/FP/FN and
    support in the entry. The label's stats are its per-row [tp, fp, fn], so intervals and paired
    comparisons resample reports, as for every other metric. `progress`: progress bars."""
    mask = np.array([r.task == "report" for r in rows])
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    pred = label_matrix([rows[i].prediction for i in idx], uncertain,
                        progress="clinical labels (predictions)" if progress else None)
    ref = label_matrix([rows[i].reference for i in idx], uncertain,
                       progress="clinical labels (references)" if progress else None)
    conf = confusion(pred, ref)  # (n, 14, 3)
    # One statistics array for all 54 metrics (each metric's function picks its labels), so the
    # bootstrap resamples the clinical section in one pass (Bootstrap.sums remembers it).
    stats = np.zeros((len(rows), len(OBSERVATIONS) * 3))
    stats[idx] = conf.reshape(idx.size, -1)
    specs = []
    for suffix, obs in (("14", OBSERVATIONS), ("5", FIVE)):
        cols = None if obs == OBSERVATIONS else [OBSERVATIONS.index(o) for o in obs]
        for avg, maker in (("micro", _micro), ("macro", _macro)):
            extra = {"uncertain": uncertain,
                     **(_counts(conf if cols is None else conf[:, cols, :]) if avg == "micro" else {})}
            for which, name in enumerate(("precision", "recall", "f1")):
                specs.append(MetricSpec("clinical", f"{name}_{avg}/{suffix}", stats, maker(which, cols),
                                        n=int(idx.size), extra=dict(extra)))
    for col, obs in enumerate(OBSERVATIONS):
        extra = {"uncertain": uncertain, **_counts(conf[:, col, :])}
        for which, name in enumerate(("precision", "recall", "f1")):
            specs.append(MetricSpec("clinical", f"{name}/{obs}", stats, _micro(which, [col]), n=int(idx.size),
                                    extra=dict(extra)))
    return specs
