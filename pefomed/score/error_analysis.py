"""What the report shows beside the numbers: a majority-answer reference line per VQA group, and
seeded samples of wrong and right rows per question type (VQA) or per finding (reports), each
with its image as an embedded thumbnail.

Only the sampled rows' images are read (a few per group), so writing the report stays cheap on a
test set of any size. Every failure to find or decode an image becomes a placeholder sentence.
"""

from __future__ import annotations

import base64
import io
import random
from collections import Counter
from pathlib import Path
from typing import Any

from pefomed.metrics import vqa
from pefomed.options import flag_of
from pefomed.score.vqa_section import GROUP_KEYS

WRONG, RIGHT = 5, 3  # rows sampled per group
THUMB_PX = 160  # longest side of an embedded thumbnail
REPORT_SCAN = 2000  # reports labelled for the per-finding samples (a seeded subset of larger files)
MAX_GROUPS = 30  # VQA groups shown (the largest ones), so a data set with hundreds of types stays readable
LABEL_WORDS = {1: "positive", 0: "negative", -1: "uncertain", None: "not mentioned"}


# ---------------------------------------------------------------- majority-answer reference

class _Scores:
    """(score, counted) of an answer under the convention, and a row's answer type, each computed
    once per distinct input: VQA answers repeat (yes/no, a majority answer against the same few
    references), so 200,000 rows cost a few thousand normalizations, not 400,000."""

    def __init__(self, convention: str):
        self.convention = convention
        self._scores: dict[tuple[str, str, str], tuple[float, bool]] = {}
        self._kinds: dict[tuple[str, str | None], str] = {}

    def kind(self, reference: str, answer_type: str | None) -> str:
        key = (reference, answer_type)
        if key not in self._kinds:
            self._kinds[key] = vqa.answer_type_of(reference, answer_type)
        return self._kinds[key]

    def score(self, answer: str, reference: str, kind: str) -> tuple[float, bool]:
        key = (answer, reference, kind)
        if key not in self._scores:
            self._scores[key] = (float(vqa.per_sample_scores([answer], [reference], [kind], self.convention)[0]),
                                 bool(vqa.counted_rows([answer], [reference], [kind], self.convention)[0]))
        return self._scores[key]


def _majority(answers: list[str]) -> tuple[str, int] | None:
    """The most frequent answer (compared after pefomed's normalization, so "Yes" and "yes" are
    one answer), shown in its most frequent spelling; ties go to the alphabetically first."""
    if not answers:
        return None
    by_norm: dict[str, Counter] = {}
    for a, n in Counter(answers).items():  # each distinct spelling normalized once
        by_norm.setdefault(vqa.normalize_answer(a), Counter())[a] += n
    norm = min(by_norm, key=lambda k: (-sum(by_norm[k].values()), k))
    spelling = min(by_norm[norm].items(), key=lambda kv: (-kv[1], kv[0]))[0]
    return spelling, sum(by_norm[norm].values())


class _Groups:
    """The VQA items of each group of the report: `members` {group: indices} for overall, closed,
    open and key/<folded value> (vqa_section.group_value's folding, computed once per item), and
    `names` {group: its metric name in METRICS.json, key/<first spelling>}."""

    def __init__(self, items: list, kinds: list[str]):
        self.members: dict[str, list[int]] = {}
        self.names: dict[str, str] = {"overall": "overall", "closed": "closed", "open": "open"}
        for i, item in enumerate(items):
            if item.task != "vqa":
                continue
            self.members.setdefault("overall", []).append(i)
            self.members.setdefault(kinds[i], []).append(i)
            for key in GROUP_KEYS:
                value = item.meta.get(key)
                if value in (None, ""):
                    continue
                spelled = " ".join(str(value).split())
                if not spelled:
                    continue
                group = f"{key}/{spelled.casefold()}"
                self.members.setdefault(group, []).append(i)
                self.names.setdefault(group, f"{key}/{spelled}")


def majority_baseline(rows: list, groups: _Groups, kinds: list[str], scorer: _Scores, data_dir: Path | None,
                      why_no_data: str | None, scored_split: str | None = None) -> dict[str, Any]:
    """What always answering a group's most frequent TRAINING answer would score on the same rows
    (DATA_DIR's train split), per VQA metric of the report: {"source", "description", "note",
    "convention", "metrics": {metric name: {value, answer, count, pool}}}. Without a readable train
    split: the most frequent reference of the scored file itself, labelled as such (it peeks at the
    answers it is scored on)."""
    if not groups.members:
        return {}
    train, note = None, why_no_data
    if data_dir is not None:
        from pefomed.errors import UserError
        from pefomed.records import read_split

        try:
            train = [s for s in read_split(data_dir, "train") if s.task == "vqa"]
            note = None if train else f"{data_dir}: the train split has no VQA rows"
        except UserError as err:
            note = f"no training answers: {err.args[0] if err.args else err}"
        except OSError as err:
            note = f"no training answers: {data_dir}: {err}"
    if train:
        source = "train"
        pool = _Groups(train, [scorer.kind(s.answer, s.answer_type) for s in train]).members
        answers = {g: [train[i].answer for i in idx] for g, idx in pool.items()}
        description = (f"always answering the group's most frequent answer in the training split of {data_dir} "
                       "(overall: the most frequent training answer of all)")
    else:
        source = "scored references"
        answers = {g: [rows[i].reference for i in idx] for g, idx in groups.members.items()}
        description = ("no training split available, so: always answering the group's most frequent REFERENCE "
                       "answer of the scored file itself; this peeks at the answers it is scored on and is an "
                       "optimistic line, not a predictor")
    metrics: dict[str, Any] = {}
    for group, idx in groups.members.items():
        name = groups.names[group]
        top = _majority(answers.get(group, []))
        if top is None:
            metrics[name] = {"value": None, "answer": None, "note": "no training rows in this group"}
            continue
        answer, count = top
        results = [scorer.score(answer, rows[i].reference, kinds[i]) for i in idx]
        counted = [s for s, keep in results if keep]
        metrics[name] = {"value": sum(counted) / len(counted) if counted else None, "answer": answer,
                         "count": count, "pool": len(answers.get(group, []))}
    if source == "train" and scored_split == "train":
        description += "; the scored rows ARE the training split, so this line is fitted to them"
    return {"source": source, "description": description, "note": note, "convention": scorer.convention,
            "metrics": metrics}


# ---------------------------------------------------------------- thumbnails

def _inputs(settings: dict | None) -> dict:
    inputs = (settings or {}).get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def image_root(pred: Path, settings: dict | None) -> tuple[Path, str]:
    """The folder a PRED file's image paths are relative to, and how it was found."""
    inputs = _inputs(settings)
    if isinstance(inputs.get("data"), str):
        return Path(inputs["data"]), "the DATA_DIR named in PRED.settings.json"
    if isinstance(inputs.get("images"), str):
        folder = Path(inputs["images"])
        # --images may name one file: its paths are then relative to that file's folder
        return ((folder.parent if folder.is_file() else folder),
                f"the {flag_of('infer', 'images')} folder named in PRED.settings.json")
    return pred.resolve().parent, "the predictions file's folder (no PRED.settings.json names a DATA_DIR)"


def thumbnail(root: Path, rel: str, row_id: str) -> tuple[str | None, str | None]:
    """(data: URI of a JPEG thumbnail, None), or (None, why there is none). The path must stay
    inside `root` (resolve_image refuses anything else: a PRED file is data, and data must not
    choose which files of the machine end up in a report)."""
    from PIL import Image

    from pefomed.data.images import load_image
    from pefomed.errors import UserError
    from pefomed.records import resolve_image

    try:
        path = Path(rel)
        if path.is_absolute():  # --images runs may carry absolute paths; only those under root
            try:
                rel = str(path.resolve().relative_to(root.resolve()))
            except ValueError:
                return None, f"image {rel} is outside {root}; not shown"
        img = load_image(resolve_image(root, rel, row_id))
        img.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)
    except UserError as err:
        return None, str(err.args[0]) if err.args else "image unavailable"
    except (OSError, ValueError) as err:
        return None, f"image {rel}: {type(err).__name__}: {str(err)[:160]}"
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), None


# ---------------------------------------------------------------- samples

def _pick(rng: random.Random, indices: list[int], k: int) -> list[int]:
    return sorted(rng.sample(indices, min(k, len(indices))))


def _card(row, root: Path, thumbs: dict, **extra) -> dict[str, Any]:
    rel = row.images[0] if row.images else None
    if rel is None:
        uri, why = None, "no image in this row"
    else:
        if rel not in thumbs:
            thumbs[rel] = thumbnail(root, rel, row.id)
        uri, why = thumbs[rel]
    if rel is not None and len(row.images) > 1:
        rel_shown = f"{rel} (first of {len(row.images)} images)"
    else:
        rel_shown = rel
    return {"id": row.id, "line": row.line, "image": rel_shown, "thumbnail": uri, "image_note": why,
            "question": row.question, "reference": row.reference, "prediction": row.prediction, **extra}


def vqa_samples(rows: list, groups: _Groups, kinds: list[str], scorer: _Scores, seed: int, root: Path,
                thumbs: dict) -> dict[str, Any]:
    """Per question type (per answer type when no row has one): the group's counts and a seeded
    sample of wrong and right rows (right = full credit under the convention)."""
    if not groups.members:
        return {}
    by = "question_type" if any(g.startswith("question_type/") for g in groups.members) else "answer_type"
    score: dict[int, float] = {}
    for i in groups.members["overall"]:
        value, counted = scorer.score(rows[i].prediction, rows[i].reference, kinds[i])
        if counted:  # rows the convention leaves out of every denominator are neither right nor wrong
            score[i] = value
    if by == "question_type":
        chosen = {groups.names[g].split("/", 1)[1]: idx for g, idx in groups.members.items()
                  if g.startswith("question_type/")}
        typed = {i for idx in chosen.values() for i in idx}
        untyped = [i for i in groups.members["overall"] if i not in typed]
        if untyped:
            chosen["(no question_type)"] = untyped
    else:
        chosen = {k: groups.members[k] for k in ("closed", "open") if k in groups.members}
    chosen = {g: [i for i in idx if i in score] for g, idx in chosen.items()}
    chosen = {g: idx for g, idx in chosen.items() if idx}
    shown = sorted(chosen, key=lambda g: (-len(chosen[g]), g))[:MAX_GROUPS]
    out = []
    for g in sorted(shown):
        rng = random.Random(f"{seed}/{by}/{g}")  # a str seed is hashed by sha512: the same on every run
        members = chosen[g]
        wrong = [i for i in members if score[i] < 1]
        right = [i for i in members if score[i] >= 1]
        cards = [_card(rows[i], root, thumbs, correct=False, score=score[i]) for i in _pick(rng, wrong, WRONG)]
        cards += [_card(rows[i], root, thumbs, correct=True, score=score[i]) for i in _pick(rng, right, RIGHT)]
        out.append({"group": g, "n": len(members), "wrong": len(wrong), "right": len(right), "cards": cards})
    return {"task": "vqa", "by": by, "groups": out, "groups_total": len(chosen), "convention": scorer.convention}


def report_samples(rows: list, uncertain: str, seed: int, root: Path, thumbs: dict) -> dict[str, Any]:
    """Per finding: reports whose reference and prediction disagree on it under the uncertain
    policy (wrong), and reports where both are positive (right), each with every finding whose
    labels disagree."""
    import math

    from pefomed.score.clinical import OBSERVATIONS, binarize, label_report

    idx = [i for i, r in enumerate(rows) if r.task == "report"]
    if not idx:
        return {}
    total = len(idx)
    if total > REPORT_SCAN:
        # labelling is ~1 ms a report when the labeler's cache no longer holds it: a seeded subset
        # keeps the report cheap on 10,000-report test sets (the page says how many were looked at)
        idx = sorted(random.Random(f"{seed}/scan").sample(idx, REPORT_SCAN))
    ref_labels = [label_report(rows[i].reference) for i in idx]
    pred_labels = [label_report(rows[i].prediction) for i in idx]

    def binary(labels: dict, obs: str) -> float:
        return binarize(labels[obs], uncertain)

    def disagreements(j: int) -> list[dict[str, str]]:
        out = []
        for obs in OBSERVATIONS:
            r, p = binary(ref_labels[j], obs), binary(pred_labels[j], obs)
            if not (math.isnan(r) or math.isnan(p)) and r != p:
                out.append({"finding": obs, "reference": LABEL_WORDS[ref_labels[j][obs]],
                            "prediction": LABEL_WORDS[pred_labels[j][obs]]})
        return out

    groups = []
    for obs in OBSERVATIONS:
        wrong, right = [], []
        for j in range(len(idx)):
            r, p = binary(ref_labels[j], obs), binary(pred_labels[j], obs)
            if math.isnan(r) or math.isnan(p):
                continue
            if r != p:
                wrong.append(j)
            elif r == 1:
                right.append(j)
        if not wrong and not right:
            continue
        rng = random.Random(f"{seed}/finding/{obs}")
        cards = [_card(rows[idx[j]], root, thumbs, correct=False, disagree=disagreements(j)) for j in _pick(rng, wrong, WRONG)]
        cards += [_card(rows[idx[j]], root, thumbs, correct=True, disagree=disagreements(j)) for j in _pick(rng, right, RIGHT)]
        groups.append({"group": obs, "n": len(wrong) + len(right), "wrong": len(wrong), "right": len(right),
                       "cards": cards})
    return {"task": "report", "by": "finding", "groups": groups, "groups_total": len(groups), "uncertain": uncertain,
            "scanned": len(idx), "total": total}


def report_extras(paths: list[Path], all_rows: list[list], compare_paths: list[Path], opts) -> dict[str, Any]:
    """Everything the HTML report needs beyond METRICS.json: provenance, the majority-answer
    reference and the error analysis (of the first A file: with seeds, its first seed)."""
    from pefomed.score.provenance import data_dir_of, provenance, read_pred_settings

    prov = provenance(paths, compare_paths, opts)
    pred, rows = paths[0], all_rows[0]
    settings, why = read_pred_settings(pred)
    data_dir = data_dir_of(settings)
    if data_dir is None and why is None:
        why = (f"{pred.name} was not answered from a DATA_DIR (inputs: {flag_of('infer', 'images')}), so there is "
               "no training split")
    root, how = image_root(pred, settings)
    thumbs: dict = {}
    scorer = _Scores(opts.vqa_convention)
    kinds = [scorer.kind(r.reference, r.answer_type) if r.task == "vqa" else "" for r in rows]
    groups = _Groups(rows, kinds)
    analysis = [a for a in (vqa_samples(rows, groups, kinds, scorer, opts.seed, root, thumbs),
                            report_samples(rows, opts.uncertain, opts.seed, root, thumbs) if opts.clinical else {}) if a]
    return {
        "provenance": prov,
        "baseline": majority_baseline(rows, groups, kinds, scorer, data_dir, why,
                                      scored_split=_inputs(settings).get("split")),
        "errors": {"file": str(pred), "seed": opts.seed, "wrong": WRONG, "right": RIGHT, "image_root": str(root),
                   "image_root_from": how, "sections": analysis,
                   "reports_without_clinical": bool(any(r.task == "report" for r in rows) and not opts.clinical)},
    }
