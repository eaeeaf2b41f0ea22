"""`pmc-vqa`: PMC-VQA (Zhang et al., 2023) CSVs.

Layout: train.csv / test.csv (or train_2.csv / test_2.csv; pass one CSV file to read another,
e.g. test_clean.csv) with Figure_path, Question, Answer (spelled "Anwser" in some files),
Choice A..D ("A:Sagittal plane"), Answer_label; figures under images/ (or `--images`).
Split rule: the file name. The choices are always kept in meta["choices"] ({"A": text, ...}) with
meta["answer_label"].
Multiple choice design: by default the question is asked open-ended (answer = the answer text,
answer_type inferred: yes/no closed, else open). With `--multiple-choice` the question gets the
lettered choices appended, one per line, and answer_type is "closed"; the answer stays the
choice text, prefixed by its letter ("B: Axial"), so exact-match scoring rewards naming the
right option. License: CC BY-SA 4.0 (figures from PMC Open Access articles).
"""

from __future__ import annotations

from pathlib import Path

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import clean, infer_answer_type, read_csv_rows, split_of
from pefomed.errors import UserError
from pefomed.io import short
from pefomed.records import Sample

CANDIDATES = {"train": ("train.csv", "train_2.csv"), "test": ("test.csv", "test_2.csv", "test_clean.csv")}
LETTERS = "ABCD"


def _choice_text(value: str | None, letter: str) -> str | None:
    text = clean(value)
    if text and text[:2].upper() in (f"{letter}:", f"{letter}.", f"{letter})"):
        text = text[2:].strip()
    return text or None


@register("pmc-vqa")
def read_pmc_vqa(source: Path, options: PrepareOptions) -> SourceSplits:
    if source.is_file():
        split = split_of(source.name)
        if split is None:
            raise UserError(f"{source}: cannot tell the split from the file name (train*.csv or test*.csv)")
        files = {split: source}
        folder = source.parent
    else:
        folder = source
        files = {}
        for split, names in CANDIDATES.items():
            found = next((source / n for n in names if (source / n).is_file()), None)
            if found:
                files[split] = found
        if not files:
            raise UserError(f"{source}: no train.csv or test.csv found")
    root = options.images or (folder / "images" if (folder / "images").is_dir() else folder / "figures"
                              if (folder / "figures").is_dir() else folder)
    splits: dict[str, list[Sample]] = {}
    for split, path in files.items():
        samples = []
        for line, row in read_csv_rows(path):
            where = f"{path}:{line}"
            answer_col = "Answer" if "Answer" in row else "Anwser" if "Anwser" in row else None
            if answer_col is None or "Figure_path" not in row or "Question" not in row:
                raise UserError(f"{path}: needs columns Figure_path, Question and Answer (or Anwser); has {', '.join(row)}")
            choices = {L: _choice_text(row.get(f"Choice {L}"), L) for L in LETTERS}
            choices = {L: t for L, t in choices.items() if t}
            label = (clean(row.get("Answer_label")) or "").upper() or None
            answer = clean(row[answer_col]) or ""
            question = clean(row["Question"]) or ""
            if label and label not in choices and choices:
                raise UserError(f"{where}: Answer_label {short(label, 60)} is not one of the choices {', '.join(choices)}")
            if options.multiple_choice:
                if not choices or not label:
                    raise UserError(f"{where}: `multiple_choice` needs Choice A..D and Answer_label")
                question = question + "\n" + "\n".join(f"{L}: {t}" for L, t in choices.items())
                answer, answer_type = f"{label}: {choices[label]}", "closed"
            else:
                answer_type = infer_answer_type(answer)
            samples.append(Sample(
                id=f"pmc-vqa-{path.stem}-{line}", task="vqa", images=[str(root / row["Figure_path"].strip())],
                question=question, answer=answer, answer_type=answer_type,
                meta={"choices": choices, "answer_label": label, "language": "en"} if label else {"choices": choices, "language": "en"}))
        splits[split] = samples
    notes = {"files": {s: p.name for s, p in files.items()},
             "answer_type": "closed (multiple choice)" if options.multiple_choice else
             "inferred: yes/no answers closed, all others open"}
    return SourceSplits(splits=splits, root=root, notes=notes)
