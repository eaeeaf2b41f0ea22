"""`pefomed prepare`: read a raw dataset, check it, and write DATA_DIR.

DATA_DIR = manifest.json + {train,val,test}.jsonl + images/ (docs/formats.md). Images are
checked (inside the source, present, readable) and copied (hard-linked when possible) to
DATA_DIR/images/ under their path relative to the source root, or converted with
`image_size` / `image_format`. A NIfTI volume is copied as it is (never converted) and a sample
names `series_frames` of its axial slices (`images/ct/vol.nii.gz#40`, pefomed.data.volumes). The output is deterministic: the same input gives byte-identical
split files and manifest apart from `created_at`.

A DATA_DIR is whole or absent: everything is written into a hidden sibling folder
(`.NAME.prepare-PID-XXXX`), checked (each split file against the sha256 in the manifest, each
image present), and only then renamed to NAME. An existing DATA_DIR is replaced only with
`overwrite` (`--overwrite`): it is renamed aside, the new one renamed in, the old one deleted.
A prepare killed at any point leaves NAME as it was (or, killed between the two renames,
absent), never a mix; the hidden folders of dead runs are removed by the next prepare.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pefomed import __version__
from pefomed.console import track
from pefomed.data.formats import EMBEDDED, PrepareOptions, SourceSplits, get_reader
from pefomed.data.formats._common import parse_fractions, seeded_split
from pefomed.data.images import load_image
from pefomed.data.volumes import is_volume, slice_refs, volume_slices
from pefomed.errors import UserError
from pefomed.options.prepare import ImageOptions  # noqa: F401 (declared once; re-exported)
from pefomed.io import (atomic_write, check_unicode, clip, publish_folder, read_json, sha256_file, short, staging_folder,
                        write_json, write_jsonl)
from pefomed.records import IMAGE_DIGESTS, MANIFEST, SPLITS, Sample, image_digest, split_slice_ref

MANIFEST_VERSION = 1


def safe_source_path(path: str, root: Path, sample_id: str) -> Path:
    """Reject image paths that escape the dataset root (absolute elsewhere, or through '..')."""
    candidate = Path(path)
    if ".." in candidate.parts:
        raise UserError(f"sample {clip(sample_id)}: image path {short(path)} contains '..' and could escape {root}")
    if "\x00" in path:
        raise UserError(f"sample {clip(sample_id)}: image path {short(path)} holds a NUL byte")
    try:
        resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # a symlink loop, a name too long
        raise UserError(f"sample {clip(sample_id)}: image path {short(path)} cannot be resolved ({err})") from None
    if not resolved.is_relative_to(root.resolve()):
        raise UserError(f"sample {clip(sample_id)}: image path {short(path)} is outside the dataset root {root} "
                        "(an absolute path elsewhere, or a symbolic link pointing out)")
    return resolved


CONVERTIBLE = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


@dataclass
class _ImageInfo:
    reason: str | None  # None when the image is fine, else why it cannot be used
    sha256: str | None = None
    rel: str | None = None  # path relative to DATA_DIR
    src: Path | None = None  # a file in the source, or None for embedded bytes
    data: bytes | None = None  # embedded bytes
    slices: list[int] | None = None  # a NIfTI volume: the axial slices a sample shows


def _dest_rel(rel: Path, images: ImageOptions) -> Path:
    if is_volume(rel):  # a volume stays a volume: its slices are chosen when read (VOLUME_RULE)
        return rel
    if images.image_format:
        return rel.with_suffix(".png" if images.image_format == "png" else ".jpg")
    if images.image_size and rel.suffix.lower() not in CONVERTIBLE:
        return rel.with_suffix(".png")  # a resized DICOM can only be written as a picture file
    return rel


def _place_image(info: _ImageInfo, dest: Path, images: ImageOptions) -> None:
    # dest is inside a fresh staging folder: nothing from an earlier run is there
    dest.parent.mkdir(parents=True, exist_ok=True)
    if (images.image_size is None and images.image_format is None) or (info.src is not None and is_volume(info.src)):
        if info.data is not None:
            with atomic_write(dest, "wb") as handle:
                handle.write(info.data)
            return
        try:
            os.link(info.src, dest)
        except OSError:
            shutil.copyfile(info.src, dest)
        return
    img = load_image(info.src or dest, data=info.data, max_pixels=images.max_image_pixels)
    if images.image_size:
        img.thumbnail((images.image_size, images.image_size))
    kind = CONVERTIBLE[dest.suffix.lower()]
    with atomic_write(dest, "wb") as handle:
        img.save(handle, format=kind, **({"quality": 95} if kind == "JPEG" else {}))


def _check_images(read: SourceSplits, root: Path, images: ImageOptions,
                  frames: int = 1) -> tuple[dict[str, _ImageInfo], dict[str, list]]:
    """Look at every image once: inside the root, present, decodable; hash its bytes. A volume's
    `frames` evenly spaced axial slices are chosen here, and each of them decoded."""
    infos: dict[str, _ImageInfo] = {}
    per_sample: dict[str, list] = {}
    samples = [(split, s) for split in SPLITS for s in read.splits.get(split, [])]
    for split, sample in track(samples, "checking images"):
        keys = []
        for path in sample.images:
            if path.startswith(EMBEDDED):
                key = path
                if key not in infos:
                    name = path[len(EMBEDDED):]
                    data = read.embedded.get(name)
                    if data is None:
                        raise RuntimeError(f"reader returned {path} without its bytes")
                    info = _ImageInfo(None, hashlib.sha256(data).hexdigest(), data=data,
                                      rel=str(Path("images") / _dest_rel(Path(name), images)))
                    try:
                        load_image(name, data=data, max_pixels=images.max_image_pixels)
                    except UserError as err:
                        info.reason = _reason(err)
                    infos[key] = info
            else:
                src = safe_source_path(path, root, sample.id)
                key = str(src)
                if key not in infos:
                    info = _ImageInfo(None, src=src)
                    try:
                        if not src.is_file():
                            info.reason = "image not found"
                        elif is_volume(src):
                            n_slices = volume_slices(src)
                            if n_slices < frames:
                                raise UserError(f"{src}: the volume has only {n_slices} axial slices, "
                                                f"series_frames is {frames}")
                            info.slices = [int(ref.rsplit("#", 1)[1]) for ref in slice_refs("", n_slices, frames)]
                            for index in info.slices:
                                load_image(f"{src}#{index}", max_pixels=images.max_image_pixels)
                            info.sha256 = sha256_file(src)
                            info.rel = str(Path("images") / _dest_rel(src.relative_to(root.resolve()), images))
                        else:
                            load_image(src, max_pixels=images.max_image_pixels)
                            info.sha256 = sha256_file(src)
                            info.rel = str(Path("images") / _dest_rel(src.relative_to(root.resolve()), images))
                    except UserError as err:
                        info.reason = _reason(err)
                    except OSError as err:  # a name too long, a permission denied
                        info.reason = f"unreadable: {err.strerror or err}"
                    infos[key] = info
            keys.append(key)
        per_sample[sample.id] = keys
    return infos, per_sample


def _reason(err: UserError) -> str:
    """The skip reason of an image error: its message without the path (listed beside it) or hint."""
    message = str(err.args[0]).split(": ", 1)[-1]
    return message if message.startswith("image too large") else "unreadable: " + message


def _resplit_by_image(kept: dict[str, list[Sample]], hashes: dict[str, str], fractions, seed: int) -> dict[str, list[Sample]]:
    """A new split in which no image content is shared between splits.

    Samples that share any image (by content hash) form one group, joined through a union-find
    so multi-image samples link their images' groups; groups are then split with the seed.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    samples = [s for split in SPLITS for s in kept.get(split, [])]
    for s in samples:
        keys = [hashes[split_slice_ref(p)[0]] for p in s.images] or [f"noimage:{s.id}"]
        for other in keys[1:]:
            a, b = find(keys[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        first = hashes[split_slice_ref(s.images[0])[0]] if s.images else f"noimage:{s.id}"
        groups.setdefault(find(first), []).append(s)
    for split in SPLITS:
        for s in kept.get(split, []):
            s.meta = {**s.meta, "original_split": split}
    return seeded_split(groups, fractions, seed)


def check_out(out: Path, source: Path, overwrite: bool) -> None:
    """Refuse an output that prepare must not write or replace, before any work is done."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"{out}: exists and is not a folder; choose another `out`")
    resolved_out, resolved_source = out.resolve(), source.resolve()
    if resolved_out == resolved_source or resolved_source in resolved_out.parents:
        raise UserError(f"{out}: the output folder must not be inside the source {source}")
    if resolved_out in resolved_source.parents:
        raise UserError(f"{out}: the source {source} is inside the output folder, which prepare would replace")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise UserError(f"{out}: a folder with files but no {MANIFEST}, so not a DATA_DIR; "
                            "prepare never replaces a folder it did not write", hint="choose another `out`")
        if not overwrite:
            raise UserError(f"{out}: a DATA_DIR is already there",
                            hint="pass `overwrite` to replace it (the old one stays whole until the new one is complete), "
                                 "or choose another `out`")


def _verify(staging: Path, manifest: dict, by_rel: dict) -> None:
    """Read back what was written before it may become the DATA_DIR."""
    if read_json(staging / MANIFEST) != json.loads(json.dumps(manifest)):  # tuples read back as lists
        raise RuntimeError("manifest.json does not read back as written")
    for split, entry in manifest["splits"].items():
        if sha256_file(staging / entry["file"]) != entry["sha256"]:
            raise RuntimeError(f"{entry['file']} does not match the sha256 just recorded")
    missing = [rel for rel in by_rel if not (staging / rel).is_file()]
    if missing:
        raise RuntimeError(f"images not written: {missing[:5]}")


def prepare(source: str | Path, fmt: str, out: str | Path, options: PrepareOptions | None = None,
            images: ImageOptions | None = None, overwrite: bool = False) -> dict:
    """Prepare `source` (in format `fmt`) into `out`; return the manifest.

    `out` must be absent, an empty folder, or (with `overwrite`) a DATA_DIR; it is replaced
    only once the new DATA_DIR is complete and checked. The steps, in order: check the
    options, read the source with its format's reader, check every sample's text and id, check
    every image, keep the usable samples, name each image's place in DATA_DIR, re-split by image
    (when asked), then write into a staging folder, verify it and swap it in.
    """
    options = options or PrepareOptions()
    images = images or ImageOptions()
    source, out = Path(source), Path(out)
    _check_options(source, out, images, overwrite, options)
    fractions = parse_fractions(options.split, default=(0.8, 0.1, 0.1)) if options.resplit_by_image else None
    # Resolve what the user typed ("../data/x") so that a '..' left in an image path can only
    # have come from the dataset's own files, which is what safe_source_path rejects.
    source = source.resolve()
    if options.images is not None:
        options = dataclasses.replace(options, images=Path(options.images).resolve())
    read, root = _read_source(source, fmt, options)
    _check_samples(read, source)
    infos, per_sample = _check_images(read, root, images, options.series_frames)
    kept, skipped = _keep_usable(read, infos, per_sample, source, options.skip_bad)
    by_rel = _image_places(infos, per_sample)
    hashes = {rel: info.sha256 for rel, info in by_rel.items()}
    if options.resplit_by_image:
        kept = _resplit_by_image(kept, hashes, fractions, options.seed)
    return _write_verified(out, lambda staging: _write(staging, kept, by_rel, hashes, infos, per_sample, skipped,
                                                       read, fmt, source, options, images, fractions), by_rel)




def _check_options(source: Path, out: Path, images: ImageOptions, overwrite: bool,
                   options: PrepareOptions) -> None:
    if not source.exists():
        raise UserError(f"{source}: no such file or folder")
    # the options' own ranges were checked when they were made (pefomed.options.prepare)
    check_out(out, source, overwrite)


def _read_source(source: Path, fmt: str, options: PrepareOptions) -> tuple[SourceSplits, Path]:
    """The format's reader output and the folder its image paths are relative to."""
    read: SourceSplits = get_reader(fmt)(source, options)
    root = (read.root or (source if source.is_dir() else source.parent)).resolve()
    unknown = set(read.splits) - set(SPLITS)
    if unknown:
        raise RuntimeError(f"reader for {fmt} returned unknown splits {unknown}")
    return read, root


def _check_samples(read: SourceSplits, source: Path) -> None:
    """Every sample's text is valid Unicode and every id is unique across splits."""
    seen_ids: dict[str, str] = {}
    for split in SPLITS:
        for s in read.splits.get(split, []):
            # Text that is not valid Unicode (a lone surrogate from a JSON escape or a non-UTF-8
            # file name) could never be written to the split file: stop it here, naming the sample.
            check_unicode(s.to_dict(), f"{source}: {split} sample {clip(s.id)}")
            if s.id in seen_ids:
                raise UserError(f"{source}: sample id {clip(s.id)} occurs twice ({seen_ids[s.id]} and {split}); "
                                "ids must be unique across splits")
            seen_ids[s.id] = split


def _keep_usable(read: SourceSplits, infos: dict, per_sample: dict, source: Path,
                 skip_bad: bool) -> tuple[dict[str, list[Sample]], list]:
    """Samples whose images are all usable (their paths now DATA_DIR-relative), and the skipped
    ones with their reasons; without --skip-bad, any unusable image is an error listing them."""
    skipped = list(read.skipped)
    kept: dict[str, list[Sample]] = {}
    problems: list[str] = []
    for split in SPLITS:
        for sample in read.splits.get(split, []):
            keys = per_sample[sample.id]
            reasons = [f"{infos[k].reason}: {clip(k, 300)}" for k in keys if infos[k].reason]
            if reasons:
                problems.append(f"{split} {clip(sample.id)}: {'; '.join(reasons)}")
                skipped.append({"id": sample.id, "split": split, "reason": "; ".join(reasons)})
                continue
            sample.images = [image for k in keys for image in _shown(infos[k])]
            kept.setdefault(split, []).append(sample)
    if problems and not skip_bad:
        listing = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise UserError(f"{len(problems)} sample(s) with missing, unreadable or too large images:\n  {listing}",
                        hint="fix the files (raise max_image_pixels for genuine large images), or set skip_bad to "
                             "skip these samples (they are listed in manifest.json)", keys=["max_image_pixels", "skip_bad"])
    if not any(kept.values()):
        raise UserError(f"{source}: no usable samples were found")
    return kept, skipped


def _shown(info: _ImageInfo) -> list[str]:
    """The image paths a sample holds for one image: its DATA_DIR path, or a volume's slices."""
    return [info.rel] if info.slices is None else [f"{info.rel}#{k}" for k in info.slices]


def _image_places(infos: dict, per_sample: dict) -> dict[str, _ImageInfo]:
    """Each used image by its path in DATA_DIR; two different files may not land on one path."""
    used = {k for s_keys in per_sample.values() for k in s_keys if not infos[k].reason}
    by_rel: dict[str, _ImageInfo] = {}
    for key in sorted(used):
        info = infos[key]
        other = by_rel.setdefault(info.rel, info)
        if other is not info and other.sha256 != info.sha256:
            raise UserError(f"{info.src} and {other.src} would both be written as {info.rel}",
                            hint="convert without `image_format`, or rename one of them")
    return by_rel


def _write_verified(out: Path, write, by_rel: dict) -> dict:
    """`write(staging)` into a hidden sibling of `out`, verify it, then swap it in: a DATA_DIR is
    whole or absent, whatever happens midway."""
    # pefomed.io's one folder writer; prepare holds no lock, so only the staging folders of
    # prepare runs that are gone are cleared (sole_writer=False)
    try:
        staging = staging_folder(out, "prepare", sole_writer=False)
    except OSError as err:
        raise UserError(f"{out}: cannot create the output folder ({err.strerror or err})") from None
    try:
        manifest = write(staging)
        _verify(staging, manifest, by_rel)
        publish_folder(staging, out)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        where = err.filename or out
        raise UserError(f"{where}: cannot write the DATA_DIR ({err.strerror or err})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write(out: Path, kept, by_rel, hashes, infos, per_sample, skipped, read, fmt, source, options, images,
           fractions) -> dict:
    """Write images, split files and manifest into `out` (the staging folder)."""
    for rel, info in track(sorted(by_rel.items()), "writing images"):
        _place_image(info, out / rel, images)

    split_files = {}
    for split in SPLITS:
        if kept.get(split):
            path = out / f"{split}.jsonl"
            write_jsonl(path, (s.to_dict() for s in kept[split]))
            split_files[split] = {"file": path.name, "sha256": sha256_file(path), "samples": len(kept[split])}

    # size and sha256 of every image as written here (after any conversion): train and infer check
    # the images they read against this before they start (pefomed.records.verify_images)
    digests = write_jsonl(out / IMAGE_DIGESTS, (image_digest(out, rel) for rel in sorted(by_rel)))
    image_digests = {"file": IMAGE_DIGESTS, "sha256": sha256_file(out / IMAGE_DIGESTS), "images": digests}

    bad = [infos[k] for k in sorted({k for ks in per_sample.values() for k in ks}) if infos[k].reason]
    counts = summarize(kept, out, hashes)
    counts["images_missing"] = sum(1 for i in bad if i.reason == "image not found")
    counts["images_unreadable"] = sum(1 for i in bad if i.reason != "image not found")
    notes = dict(read.notes)
    if options.resplit_by_image:
        notes["resplit_by_image"] = {"seed": options.seed, "fractions": list(fractions),
                                     "rule": "samples sharing an image (by content hash) stay in one split"}
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "tool": "pefomed",
        "tool_version": __version__,
        "format": fmt,
        "source": str(source.resolve()),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(options).items())},
        "image_options": vars(images),
        "splits": split_files,
        "image_digests": image_digests,
        "counts": counts,
        "notes": notes,
        "skipped": skipped,
    }
    write_json(out / MANIFEST, manifest)
    return manifest


def summarize(kept: dict[str, list[Sample]], out: Path, hashes: dict[str, str] | None = None) -> dict:
    """Counts per split x task x answer type, vocabulary size, duplicates and leakage."""
    counts: dict = {"per_split": {}, "answer_vocabulary": 0}
    answers = set()
    image_hash: dict[str, str] = dict(hashes or {})  # DATA_DIR-relative path -> sha256 of the source bytes
    for split, samples in kept.items():
        per = Counter()
        for s in samples:
            per[f"{s.task}/{s.answer_type or '-'}"] += 1
            answers.add(s.answer.strip().lower())
        counts["per_split"][split] = {"total": len(samples), **dict(sorted(per.items()))}
    counts["answer_vocabulary"] = len(answers)

    def content_hash(rel: str) -> str:
        rel = split_slice_ref(rel)[0]  # a volume's slices: the volume file
        if rel not in image_hash:
            image_hash[rel] = hashlib.sha256((out / rel).read_bytes()).hexdigest()
        return image_hash[rel]

    images_by_split = {split: {content_hash(p) for s in samples for p in s.images} for split, samples in kept.items()}
    all_paths = {split_slice_ref(p)[0] for samples in kept.values() for s in samples for p in s.images}
    hashes = Counter(content_hash(p) for p in all_paths)
    counts["images"] = len(all_paths)
    counts["duplicate_images"] = sum(n - 1 for n in hashes.values() if n > 1)
    keys = Counter((s.task, tuple(s.images), s.text_input.strip().lower(), s.answer.strip().lower())
                   for samples in kept.values() for s in samples)
    counts["duplicate_samples"] = sum(n - 1 for n in keys.values() if n > 1)
    counts["empty_questions"] = sum(1 for samples in kept.values() for s in samples if s.task == "vqa" and not s.text_input.strip())
    counts["empty_answers"] = sum(1 for samples in kept.values() for s in samples if not s.answer.strip())
    for held_out in ("val", "test"):
        if held_out in images_by_split and "train" in images_by_split:
            counts[f"{held_out}_images_in_train"] = len(images_by_split[held_out] & images_by_split["train"])
            counts[f"{held_out}_images"] = len(images_by_split[held_out])
    return counts
