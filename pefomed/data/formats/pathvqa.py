"""`pathvqa`: PathVQA (He et al., 2020) as its authors distribute it.

Layout: split/qas/{train,val,test}/{split}_qa.pkl, each a pickled list of
{'image': 'train_0422', 'question': ..., 'answer': ...}, with images at
split/images/{split}/NAME.jpg. Split rule: the folder. Yes/no answers are closed, all others open
(the release has no answer type; the manifest notes that it was inferred).
Safety: the pickles are read with an unpickler that admits only plain containers, strings and
numbers, so a pickle carrying a callable is refused before anything runs.
License: the images are copyrighted by the publishers of the source textbooks and articles.
"""

from __future__ import annotations

from pathlib import Path

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import (answer_text, infer_answer_type, load_plain_pickle, need_keys, need_list,
                                          text_field)
from pefomed.errors import UserError
from pefomed.io import short
from pefomed.records import Sample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _root(source: Path) -> Path:
    for candidate in (source / "split", source):
        if (candidate / "qas").is_dir():
            return candidate
    raise UserError(f"{source}: not a PathVQA folder (expected split/qas/{{train,val,test}}/*_qa.pkl)")


@register("pathvqa")
def read_pathvqa(source: Path, options: PrepareOptions) -> SourceSplits:
    root = _root(source)
    image_root = options.images or root / "images"
    splits: dict[str, list[Sample]] = {}
    for split in ("train", "val", "test"):
        path = root / "qas" / split / f"{split}_qa.pkl"
        if not path.is_file():
            continue
        samples = []
        for index, rec in enumerate(need_list(load_plain_pickle(path), path, "a pickled list of records")):
            where = f"{path}: record {index}"
            need_keys(rec, ("image", "question", "answer"), where)
            name = text_field(rec["image"], where, "image")
            if not name or "/" in name or "\x00" in name or name in (".", ".."):
                raise UserError(f"{where}: image {short(name, 60)} is not a plain file name")
            image = image_root / split / name
            if not Path(name).suffix and len(name) < 200:
                # names come without a suffix; the release uses .jpg, some mirrors .png
                image = next((image.with_name(name + s) for s in IMAGE_SUFFIXES if image.with_name(name + s).is_file()),
                             image.with_name(name + ".jpg"))
            answer = answer_text(rec["answer"], where)
            samples.append(Sample(
                id=f"pathvqa-{split}-{index}",
                task="vqa",
                images=[str(image)],
                question=text_field(rec["question"], where, "question"),
                answer=answer,
                answer_type=infer_answer_type(answer),
                meta={"image_name": name, "language": "en", "modality": "pathology"},
            ))
        splits[split] = samples
    if not splits:
        raise UserError(f"{root}/qas: no {{train,val,test}}/<split>_qa.pkl files found")
    return SourceSplits(splits=splits, root=image_root,
                        notes={"answer_type": "inferred: yes/no answers closed, all others open"})
