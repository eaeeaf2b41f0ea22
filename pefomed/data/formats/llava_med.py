"""`llava-med`: LLaVA-Med conversation JSON (Li et al., 2023).

Layout: a JSON list of {id, image, conversations: [{from: human|gpt, value}, ...]} (the VQA
fine-tuning files add answer_type CLOSED/OPEN), images relative to `--images` or the JSON's
folder. One file: split from its name (train*.json, test*.json ...), else a seeded split by image;
a folder: every *.json whose name gives a split. Each human/gpt pair is one sample
(id = "<id>-<pair index>"); the "<image>" placeholder is removed from the human turn.
Missing answer types are inferred (yes/no closed, else open) and the manifest says so.
"""

from __future__ import annotations

from pathlib import Path

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import (answer_type_of, id_field, image_list, image_root, infer_answer_type, json_files,
                                          need_keys, need_list, parse_fractions, seeded_split, split_of, text_field)
from pefomed.errors import UserError
from pefomed.io import read_json
from pefomed.records import Sample

PLACEHOLDER = "<image>"


@register("llava-med")
def read_llava_med(source: Path, options: PrepareOptions) -> SourceSplits:
    files = json_files(source, "conversation")
    root = image_root(source, options.images)
    by_split: dict[str | None, list[Sample]] = {}
    inferred = 0
    for path in files:
        split = split_of(path.name)
        for index, rec in enumerate(need_list(read_json(path), path)):
            where = f"{path}: record {index}"
            need_keys(rec, ("id", "image", "conversations"), where)
            rec_id = id_field(rec["id"], where)
            where = f"{where} (id {rec_id})"
            images = image_list(rec["image"], where, "image")
            turns = rec["conversations"]
            if not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2:
                raise UserError(f"{where}: conversations must be human/gpt pairs")
            for k in range(0, len(turns), 2):
                human, gpt = turns[k], turns[k + 1]
                if not (isinstance(human, dict) and isinstance(gpt, dict)
                        and human.get("from") == "human" and gpt.get("from") == "gpt"):
                    raise UserError(f"{where}: turn {k} must be from human and turn {k + 1} from gpt")
                question = text_field(human.get("value"), f"{where}: turn {k}", "value").replace(PLACEHOLDER, "").strip()
                answer = text_field(gpt.get("value"), f"{where}: turn {k + 1}", "value", numbers=True)
                if rec.get("answer_type") is not None:
                    answer_type = answer_type_of(rec["answer_type"], where)
                else:
                    answer_type = infer_answer_type(answer)
                    inferred += 1
                by_split.setdefault(split, []).append(Sample(
                    id=f"{rec_id}-{k // 2}", task="vqa", images=[str(root / str(p)) for p in images],
                    question=question, answer=answer, answer_type=answer_type, meta={"source_file": path.name}))
    notes: dict[str, object] = {}
    if inferred:
        notes["answer_type"] = f"inferred for {inferred} samples: yes/no answers closed, all others open"
    splits = {k: v for k, v in by_split.items() if k}
    if None in by_split:
        fractions = parse_fractions(options.split)
        groups: dict[str, list[Sample]] = {}
        for s in by_split[None]:
            groups.setdefault(s.images[0], []).append(s)
        for split, samples in seeded_split(groups, fractions, options.seed).items():
            splits.setdefault(split, []).extend(samples)
        notes["split"] = {"rule": "seeded, by image path", "fractions": list(fractions), "seed": options.seed}
    return SourceSplits(splits=splits, root=root, notes=notes)
