"""`openi`: the Indiana University chest X-ray collection (Open-i; CC BY-NC-ND 4.0).

Two layouts, detected by what SOURCE holds:
- the NLM release: ecgen-radiology/N.xml (AbstractText Label FINDINGS / IMPRESSION / INDICATION /
  COMPARISON, one parentImage id per image) with images NAME.png in NLMCXR_png/ (or `--images`);
- the Kaggle CSV pair: indiana_reports.csv (uid, MeSH, Problems, image, indication, comparison,
  findings, impression) + indiana_projections.csv (uid, filename, projection), images in
  images/images_normalized/ (or `--images`).
`--section findings|impression|both` picks the report text ("both" needs both, joined by a
blank line). A study whose chosen section is empty, or which has no image, is an error naming
it; with --skip-bad it is skipped and listed. The source has no split: a seeded split by study
(`--split 0.7,0.1,0.2 --seed N`), so all images of a study stay in one split.
"""

from __future__ import annotations

from pathlib import Path

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import clean, compact, parse_fractions, parse_xml, read_csv_rows, seeded_split
from pefomed.errors import UserError
from pefomed.records import Sample

SECTIONS = ("findings", "impression", "both")


def _first_dir(*candidates: Path) -> Path:
    return next((c for c in candidates if c.is_dir()), candidates[-1])


def _studies_from_xml(source: Path, image_root: Path) -> list[dict]:
    studies = []
    files = sorted((source / "ecgen-radiology").glob("*.xml"), key=lambda p: (len(p.stem), p.stem))
    if not files:
        raise UserError(f"{source}/ecgen-radiology: no .xml reports found")
    for path in files:
        root = parse_xml(path)
        texts = {}
        for node in root.iter("AbstractText"):
            label = (node.get("Label") or "").strip().lower()
            texts[label] = clean("".join(node.itertext()))
        uid = root.find("uId")
        study = uid.get("id") if uid is not None and uid.get("id") else f"CXR{path.stem}"
        images = [image_root / f"{node.get('id')}.png" for node in root.iter("parentImage") if node.get("id")]
        mesh = [clean(m.text) for m in root.iter("major") if clean(m.text)]
        studies.append({"study": study, "where": str(path), "findings": texts.get("findings"),
                        "impression": texts.get("impression"), "indication": texts.get("indication"),
                        "comparison": texts.get("comparison"), "mesh": mesh, "images": images, "projections": []})
    return studies


def _studies_from_csv(source: Path, image_root: Path) -> list[dict]:
    reports_path, projections_path = source / "indiana_reports.csv", source / "indiana_projections.csv"
    if not projections_path.is_file():
        raise UserError(f"{source}: indiana_reports.csv found but indiana_projections.csv is missing")
    images: dict[str, list[tuple[str, str]]] = {}
    for line, row in read_csv_rows(projections_path):
        for col in ("uid", "filename"):
            if col not in row:
                raise UserError(f"{projections_path}:1: no {col!r} column")
        images.setdefault(row["uid"].strip(), []).append((row["filename"].strip(), (row.get("projection") or "").strip()))
    studies = []
    for line, row in read_csv_rows(reports_path):
        if "uid" not in row:
            raise UserError(f"{reports_path}:1: no 'uid' column")
        uid = row["uid"].strip()
        views = images.get(uid, [])
        studies.append({"study": f"CXR{uid}", "where": f"{reports_path}:{line}", "findings": clean(row.get("findings")),
                        "impression": clean(row.get("impression")), "indication": clean(row.get("indication")),
                        "comparison": clean(row.get("comparison")),
                        "mesh": [m for m in (clean(x) for x in (row.get("MeSH") or "").split(";")) if m],
                        "images": [image_root / name for name, _ in views], "projections": [p for _, p in views]})
    return studies


@register("openi")
def read_openi(source: Path, options: PrepareOptions) -> SourceSplits:
    if options.section not in SECTIONS:
        raise UserError(f"`section` must be one of {', '.join(SECTIONS)}, got {options.section!r}")
    if not source.is_dir():
        raise UserError(f"{source}: not a folder (openi expects ecgen-radiology/ or indiana_reports.csv)")
    fractions = parse_fractions(options.split)
    if (source / "ecgen-radiology").is_dir():
        image_root = options.images or _first_dir(source / "NLMCXR_png", source)
        studies, layout = _studies_from_xml(source, image_root), "ecgen-radiology XML"
    elif (source / "indiana_reports.csv").is_file():
        image_root = options.images or _first_dir(source / "images" / "images_normalized", source / "images_normalized", source)
        studies, layout = _studies_from_csv(source, image_root), "indiana CSV"
    else:
        raise UserError(f"{source}: not an Open-i folder (no ecgen-radiology/ and no indiana_reports.csv)")
    groups: dict[str, list[Sample]] = {}
    skipped: list[dict[str, str]] = []
    problems: list[str] = []
    for st in studies:
        if options.section == "both":
            text = "\n\n".join([st["findings"], st["impression"]]) if st["findings"] and st["impression"] else None
        else:
            text = st[options.section]
        reason = (f"empty {options.section}" if options.section != "both" else "findings or impression empty") if not text \
            else "no images" if not st["images"] else None
        if reason:
            problems.append(f"{st['study']} ({st['where']}): {reason}")
            skipped.append({"id": st["study"], "reason": f"{reason} ({st['where']})"})
            continue
        if st["study"] in groups:
            raise UserError(f"{st['where']}: study {st['study']} appears twice")
        groups[st["study"]] = [Sample(
            id=st["study"], task="report", images=[str(p) for p in st["images"]], answer=text,
            meta=compact({"indication": st["indication"], "comparison": st["comparison"], "mesh": st["mesh"],
                          "projections": st["projections"], "section": options.section, "language": "en"}))]
    if problems and not options.skip_bad:
        listing = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise UserError(f"{len(problems)} study(ies) without a usable report or image:\n  {listing}",
                        hint="pass `skip_bad` to skip them (they are listed in manifest.json), or choose another `section`")
    notes = {"layout": layout, "split": {"rule": "seeded, by study", "fractions": list(fractions), "seed": options.seed}}
    return SourceSplits(splits=seeded_split(groups, fractions, options.seed), notes=notes, skipped=skipped, root=image_root)
