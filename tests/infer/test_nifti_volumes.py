"""NIfTI volumes (.nii, .nii.gz) as images (pefomed.data.volumes.VOLUME_RULE): reoriented to RAS+,
axial slices counted from the inferior end, shown radiologically (anterior at the top, the
patient's right on the image's left), N evenly spaced slices per volume (`PATH#K`); through the
installed command: one infer row per volume of a folder, one `error:` line naming a damaged file,
and a prepared volume that trains. The volumes are real NIfTI files written with nibabel."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np

from pefomed.cli.app import main
from pefomed.data.images import load_image
from pefomed.data.volumes import VOLUME_RULE, volume_slices
from pefomed.infer.sources import folder_samples

PEFOMED = Path(sys.executable).with_name("pefomed")

# A scanner-style affine that is far from RAS+: data axis 0 runs superior -> inferior (the axial
# axis, flipped), data axis 1 posterior -> anterior, data axis 2 the patient's right -> left.
# Canonical x (towards the right) is then data axis 2 reversed, y data axis 1, z data axis 0 reversed.
PERMUTED = np.array([[0.0, 0.0, -0.8, 20.0],
                     [0.0, 0.9, 0.0, -10.0],
                     [-2.5, 0.0, 0.0, 30.0],
                     [0.0, 0.0, 0.0, 1.0]])
N_AXIAL, N_AP, N_RL = 10, 24, 32  # the picture is N_RL wide and N_AP high
BLOB_SLICE = 5  # canonical (from inferior) = data index N_AXIAL - 1 - 5 = 4


def save(path: Path, data: np.ndarray, affine=None, cal: tuple[float, float] | None = None) -> Path:
    img = nibabel.Nifti1Image(data, np.eye(4) if affine is None else affine)
    if cal is not None:
        img.header["cal_min"], img.header["cal_max"] = cal
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(img, path)
    return path


def permuted_volume(path: Path, cal=None) -> Path:
    """Background 0, one 6 x 6 blob of 1000 at the anterior-right corner of canonical slice 5 only."""
    data = np.zeros((N_AXIAL, N_AP, N_RL), dtype=np.int16)
    # anterior = high data axis 1; the patient's right = low data axis 2 (it runs right -> left)
    data[N_AXIAL - 1 - BLOB_SLICE, N_AP - 6:, :6] = 1000
    return save(path, data, PERMUTED, cal)


def quadrants(picture) -> dict[str, float]:
    a = np.asarray(picture.convert("L"), dtype=np.float64)
    h, w = a.shape[0] // 2, a.shape[1] // 2
    return {"top-left": a[:h, :w].mean(), "top-right": a[:h, w:].mean(),
            "bottom-left": a[h:, :w].mean(), "bottom-right": a[h:, w:].mean()}


def test_a_permuted_flipped_volume_is_read_in_ras_and_shown_radiologically(tmp_path):
    vol = permuted_volume(tmp_path / "ct" / "vol.nii.gz")
    assert volume_slices(vol) == N_AXIAL  # the axial axis is found as data axis 0, not the last one
    samples, root = folder_samples(tmp_path / "ct", "Is there a mass?")
    assert [(s.id, s.images) for s in samples] == [("vol.nii.gz", [f"vol.nii.gz#{N_AXIAL // 2}"])]
    three = folder_samples(tmp_path / "ct", None, series_frames=3)[0]
    assert three[0].images == ["vol.nii.gz#1", "vol.nii.gz#5", "vol.nii.gz#8"]  # floor((2i+1)10/6)

    middle = load_image(root / samples[0].images[0])
    assert middle.mode == "RGB" and middle.size == (N_RL, N_AP)  # width: right-left, height: anterior-posterior
    q = quadrants(middle)
    assert q["top-left"] > 40 and q["top-right"] == q["bottom-left"] == q["bottom-right"] == 0, q
    pixels = np.asarray(middle.convert("L"))
    assert (pixels[:6, :6] == 255).all() and pixels[6:, :].max() == 0 and pixels[:, 6:].max() == 0
    # the volume path alone is its middle slice; every other slice (an unflipped axial axis would
    # read data index 5, canonical 4) is blank
    assert load_image(vol).tobytes() == middle.tobytes()
    for k in range(N_AXIAL):
        if k != BLOB_SLICE:
            assert np.asarray(load_image(f"{vol}#{k}")).max() == 0, k

    # the same picture, computed independently from nibabel's canonical array
    canon = nibabel.as_closest_canonical(nibabel.load(vol)).get_fdata()[:, :, BLOB_SLICE]  # [x right, y anterior]
    expected = (canon[::-1, ::-1].T > 0)  # rows anterior -> posterior, columns right -> left
    assert np.array_equal(pixels > 0, expected)


def test_windowing_uses_the_header_display_range_else_percentiles(tmp_path):
    with_cal = load_image(permuted_volume(tmp_path / "cal.nii", cal=(0.0, 2000.0)))
    assert np.asarray(with_cal.convert("L"))[0, 0] == 128  # 1000 over 0..2000
    # no cal range: the 0.5..99.5 percentiles of the slice (0 and 1000 here) span 0..255
    plain = load_image(permuted_volume(tmp_path / "plain.nii"))
    assert np.asarray(plain.convert("L"))[0, 0] == 255
    # a 4-D file whose 4th dimension is 1 is a 3-D volume
    data = np.arange(8 * 8 * 4, dtype=np.float32).reshape(8, 8, 4, 1)
    assert volume_slices(save(tmp_path / "one.nii.gz", data)) == 4
    assert load_image(tmp_path / "one.nii.gz#3").size == (8, 8)
    assert "RAS+" in VOLUME_RULE and "cal_min..cal_max" in VOLUME_RULE and "floor((2i+1)n/2N)" in VOLUME_RULE


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(PEFOMED), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def volume_folder(root: Path) -> Path:
    """a.nii.gz (32 x 32 x 8), sub/b.nii.gz (32 x 32 x 8), sub/c.nii (uncompressed, 32 x 32 x 6) and a note."""
    rng = np.random.default_rng(0)
    save(root / "a.nii.gz", rng.integers(-1000, 1000, (32, 32, 8)).astype(np.int16))
    save(root / "sub" / "b.nii.gz", rng.normal(size=(32, 32, 8)).astype(np.float32))
    save(root / "sub" / "c.nii", rng.integers(0, 255, (32, 32, 6)).astype(np.uint8))
    (root / "sub" / "notes.txt").write_text("not an image")
    return root


def test_infer_answers_each_volume_of_a_folder_as_one_row(tmp_path):
    root = volume_folder(tmp_path / "volumes")
    question = "Is there a mass?"
    result = run("infer", "tiny-demo", "--images", str(root), "--question", question, "--out", "p.jsonl",
                 "--max-new-tokens", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(r["id"], r["images"]) for r in rows] == [("a.nii.gz", ["a.nii.gz#4"]),
                                                      ("sub/b.nii.gz", ["sub/b.nii.gz#4"]),
                                                      ("sub/c.nii", ["sub/c.nii#3"])]
    assert all(r["question"] == question and isinstance(r["prediction"], str) for r in rows)
    assert "3 NIfTI volume(s)" in result.stdout + result.stderr

    result = run("infer", "tiny-demo", "--images", str(root), "--question", question, "--out", "q.jsonl",
                 "--max-new-tokens", "2", "--series-frames", "7", cwd=tmp_path)
    assert result.returncode == 2 and "volume sub/c.nii has only 6 axial slices" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "q.jsonl").exists()


def damaged_folder(bad: Path, tmp_path: Path) -> dict[str, str]:
    """Five damaged volumes in `bad`: {file name: what its error says}."""
    good = save(tmp_path / "good.nii.gz", np.ones((16, 16, 8), dtype=np.int16))
    bad.mkdir()
    (bad / "text.nii.gz").write_text("this is not gzip, nor NIfTI\n")
    (bad / "truncated.nii.gz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    # a complete gzip container whose NIfTI data ends before the middle slice (only the slices
    # shown are read, so a volume cut short after them still answers)
    raw = gzip.decompress(good.read_bytes())
    (bad / "short.nii.gz").write_bytes(gzip.compress(raw[: 352 + 1000]))
    save(bad / "flat.nii.gz", np.ones((16, 16), dtype=np.int16))
    save(bad / "series.nii.gz", np.ones((8, 8, 4, 3), dtype=np.int16))
    return {"text.nii.gz": "unreadable NIfTI volume (ImageFileError", "truncated.nii.gz": "unreadable NIfTI volume",
            "short.nii.gz": "unreadable NIfTI volume data (ValueError",
            "flat.nii.gz": "a 2-D image (16 x 16); a volume has 3 dimensions",
            "series.nii.gz": "a 4-D volume (8 x 8 x 4 x 3); pefomed reads 3-D volumes"}


def one_error(stderr: str, name: str, says: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"bad/{name}: " in errors[0] and says in errors[0], (name, stderr[-3000:])
    assert "Traceback" not in stderr and "Warning" not in stderr, (name, stderr[-3000:])


def test_damaged_volumes_give_one_error_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad"
    cases = damaged_folder(bad, tmp_path)
    # each file alone (in this process: the model is built once): exit 2, one line, no answers
    for name, says in cases.items():
        capsys.readouterr()
        assert main(["infer", "tiny-demo", "--images", str(bad / name), "--question", "Mass?",
                     "--out", str(tmp_path / f"{name}.jsonl"), "--max-new-tokens", "2"]) == 2, name
        one_error(capsys.readouterr().err, name, says)
        assert not (tmp_path / f"{name}.jsonl").exists(), name
    # the real console script on the folder with --skip-bad: each file listed with its reason, then
    # one error line, as nothing is left to answer
    result = run("infer", "tiny-demo", "--images", str(bad), "--question", "Mass?", "--out", "q.jsonl",
                 "--max-new-tokens", "2", "--skip-bad", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    output = result.stdout + result.stderr
    for name, says in cases.items():
        listed = [line for line in output.splitlines() if line.startswith(f"skipped {name}: ")]
        assert len(listed) == 1 and says in listed[0], (name, output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}: nothing to answer (--skip-bad skipped all 5 images)"], result.stderr[-3000:]


def test_a_prepared_volume_sample_trains(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(1)
    save(src / "ct" / "vol.nii.gz", rng.integers(-1000, 1000, (24, 24, 9)).astype(np.int16))
    save(src / "ct" / "two.nii", rng.integers(0, 400, (24, 24, 5)).astype(np.int16))
    rows = [{"id": f"q{i}", "image": image, "question": "Is there a mass?", "answer": answer, "split": split}
            for i, (image, answer, split) in enumerate((("ct/vol.nii.gz", "yes", "train"),
                                                        ("ct/two.nii", "no", "train"),
                                                        ("ct/vol.nii.gz", "no", "test")))]
    (src / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = tmp_path / "data"
    result = run("prepare", str(src / "questions.jsonl"), "--format", "jsonl", "--series-frames", "2",
                 "--out", str(data), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    train = {r["id"]: r["images"] for r in map(json.loads, (data / "train.jsonl").read_text().splitlines())}
    # 9 slices, 2 frames: floor(9/4) = 2, floor(27/4) = 6; 5 slices: 1, 3
    assert [Path(p).name for p in train["q0"]] == ["vol.nii.gz#2", "vol.nii.gz#6"], train
    assert [Path(p).name for p in train["q1"]] == ["two.nii#1", "two.nii#3"], train
    volume = data / train["q0"][0].split("#")[0]
    assert volume.read_bytes() == (src / "ct" / "vol.nii.gz").read_bytes()  # copied as it is
    digests = [json.loads(line)["path"] for line in (data / "image_digests.jsonl").read_text().splitlines()]
    assert sorted(digests) == ["images/ct/two.nii", "images/ct/vol.nii.gz"]  # one per file, not per slice
    result = run("train", "tiny-demo", "--data", str(data), "--out", str(tmp_path / "run"), "train.max_steps=1",
                 "train.batch_size=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_folder_format_reads_volumes_with_their_sidecar_reports(tmp_path):
    """`prepare --format folder`: ct.nii.gz's report is ct.txt, one report sample per volume showing
    `--series-frames` slices; a volume without its sidecar is named as such."""
    src = tmp_path / "reports"
    rng = np.random.default_rng(2)
    save(src / "train" / "ct.nii.gz", rng.integers(-1000, 1000, (24, 24, 9)).astype(np.int16))
    (src / "train" / "ct.txt").write_text("No mass. Normal liver.")
    save(src / "test" / "head.nii", rng.integers(0, 400, (24, 24, 5)).astype(np.int16))
    (src / "test" / "head.txt").write_text("No bleed.")
    data = tmp_path / "data"
    result = run("prepare", str(src), "--format", "folder", "--series-frames", "2", "--out", str(data), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {split: [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()]
            for split in ("train", "test")}
    assert [(r["id"], r["answer"], [Path(p).name for p in r["images"]]) for r in rows["train"]] == \
        [("train/ct", "No mass. Normal liver.", ["ct.nii.gz#2", "ct.nii.gz#6"])]
    assert [(r["id"], [Path(p).name for p in r["images"]]) for r in rows["test"]] == \
        [("test/head", ["head.nii#1", "head.nii#3"])]
    (src / "test" / "head.txt").unlink()
    missing = run("prepare", str(src), "--format", "folder", "--out", str(tmp_path / "d2"), cwd=tmp_path)
    assert missing.returncode == 2 and "test/head: no sidecar report head.txt" in missing.stderr, missing.stderr
