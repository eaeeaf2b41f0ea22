"""`pefomed infer --images` on DICOM series: a folder's single-frame slices of one
SeriesInstanceUID are one sample, shown as its middle slice along the slice normal (or
`--series-frames N` evenly spaced slices in order); projection images, lone slices, multi-frame
files and PNGs beside them are answered alone; two series in one folder are two samples. The
files are real DICOM written with pydicom."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pefomed.cli.app import main
from pefomed.data.images import SERIES_RULE, load_image, series_frames
from pefomed.infer.sources import folder_samples

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # rows along x, columns along y: the slice normal is z
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # rows along y, columns along -z: the normal is -x


def write_slice(path: Path, series_uid: str | None, position: tuple | None, instance: int | None = None,
                orientation: tuple | None = AXIAL, level: int = 0, modality: str = "CT") -> Path:
    """One uncompressed 16-bit single-frame slice with the fields a scanner writes; its pixels
    are `level` + a gradient, so each slice is a different picture."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    if series_uid is not None:
        ds.SeriesInstanceUID = series_uid
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if instance is not None:
        ds.InstanceNumber = instance
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = (np.add.outer(np.arange(16), np.arange(16)) * 40 + level).astype(np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_folder(root: Path) -> Path:
    """patient1/ct: 5 axial slices whose file names and instance numbers do not follow their z;
    patient2/mixed: an axial series of 3 and a sagittal series of 4 (ordered along x), a PNG,
    a lone slice of a third series, and two radiographs of one series without a position."""
    ct = root / "patient1" / "ct"
    for name, z, instance in (("IM3.dcm", 10.0, 1), ("IM1.dcm", -20.0, 5), ("IM5.dcm", 0.0, 2),
                              ("IM2.dcm", 25.0, 3), ("IM4.dcm", -5.0, 4)):
        write_slice(ct / name, "1.2.826.0.1.3680043.8.498.10", (0.0, 0.0, z), instance, level=int(z * 10))
    mixed = root / "patient2" / "mixed"
    for i, z in enumerate((2.5, 0.0, 5.0)):
        write_slice(mixed / f"ax{i}.dcm", "1.2.826.0.1.3680043.8.498.21", (0.0, 0.0, z), i + 1)
    for i, x in enumerate((30.0, 10.0, 40.0, 20.0)):
        write_slice(mixed / f"sag{i}.dcm", "1.2.826.0.1.3680043.8.498.22", (x, 0.0, 0.0), 1, SAGITTAL)
    write_slice(mixed / "lone.dcm", "1.2.826.0.1.3680043.8.498.23", (0.0, 0.0, 0.0), 1)
    for name in ("pa.dcm", "lat.dcm"):  # projection radiographs: no position, one sample each
        write_slice(mixed / name, "1.2.826.0.1.3680043.8.498.24", None, 1, orientation=None, modality="DX")
    Image.new("RGB", (20, 20), (80, 90, 100)).save(mixed / "photo.png")
    return root


def test_series_are_one_sample_each_with_the_middle_slice_by_position(tmp_path):
    root = ct_folder(tmp_path / "scans")
    samples, got_root = folder_samples(root, "Is there a mass?")
    assert got_root == root
    by_id = {s.id: s.images for s in samples}
    assert [s.id for s in samples] == sorted(by_id)  # id order, as the files always were
    assert by_id == {
        # z order -20 (IM1), -5 (IM4), 0 (IM5), 10 (IM3), 25 (IM2): the middle one is IM5
        "patient1/ct/1.2.826.0.1.3680043.8.498.10": ["patient1/ct/IM5.dcm"],
        # z 0, 2.5, 5: ax0 (z 2.5) is the middle
        "patient2/mixed/1.2.826.0.1.3680043.8.498.21": ["patient2/mixed/ax0.dcm"],
        # sagittal, normal -x: x 40, 30, 20, 10 -> sag2, sag0, sag3, sag1; 4 // 2 = the third, sag3
        "patient2/mixed/1.2.826.0.1.3680043.8.498.22": ["patient2/mixed/sag3.dcm"],
        "patient2/mixed/lat.dcm": ["patient2/mixed/lat.dcm"],
        "patient2/mixed/lone.dcm": ["patient2/mixed/lone.dcm"],
        "patient2/mixed/pa.dcm": ["patient2/mixed/pa.dcm"],
        "patient2/mixed/photo.png": ["patient2/mixed/photo.png"],
    }
    # every chosen slice decodes (rescale, then the window) to a different picture
    assert load_image(root / "patient1/ct/IM5.dcm").tobytes() != load_image(root / "patient1/ct/IM3.dcm").tobytes()

    three = {s.id: s.images for s in folder_samples(root, None, series_frames=3)[0]}
    assert three["patient1/ct/1.2.826.0.1.3680043.8.498.10"] == ["patient1/ct/IM1.dcm", "patient1/ct/IM5.dcm",
                                                                  "patient1/ct/IM2.dcm"]
    assert three["patient2/mixed/1.2.826.0.1.3680043.8.498.22"] == ["patient2/mixed/sag2.dcm",
                                                                     "patient2/mixed/sag3.dcm",
                                                                     "patient2/mixed/sag1.dcm"]
    assert three["patient2/mixed/photo.png"] == ["patient2/mixed/photo.png"]

    # the series folder itself given to --images: its id is the UID alone
    alone = folder_samples(root / "patient1" / "ct", None)[0]
    assert [(s.id, s.images) for s in alone] == [("1.2.826.0.1.3680043.8.498.10", ["IM5.dcm"])]
    assert "SeriesInstanceUID" in SERIES_RULE and "floor((2i+1)n/2N)" in SERIES_RULE


def test_equal_positions_fall_back_to_the_instance_number(tmp_path):
    for name, instance in (("c.dcm", 3), ("a.dcm", 2), ("b.dcm", 1)):
        write_slice(tmp_path / "s" / name, "1.2.3.4", (0.0, 0.0, 7.0), instance)
    assert folder_samples(tmp_path / "s", None, series_frames=3)[0][0].images == ["b.dcm", "a.dcm", "c.dcm"]


def test_evenly_spaced_frames():
    assert series_frames(5, 1) == [2] and series_frames(4, 1) == [2] and series_frames(1, 1) == [0]
    assert series_frames(10, 3) == [1, 5, 8] and series_frames(6, 6) == list(range(6))
    for n in range(1, 30):
        for k in range(1, n + 1):
            picked = series_frames(n, k)
            assert picked == sorted(set(picked)) and len(picked) == k and 0 <= picked[0] and picked[-1] < n


def broken_dicom_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "s1.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")  # a preamble, then no dataset
    (folder / "s2.dcm").write_bytes(b"not dicom at all")
    return folder


def test_infer_answers_a_series_as_one_row_with_its_slices(tmp_path, capsys):
    root = ct_folder(tmp_path / "scans")
    out = tmp_path / "pred.jsonl"
    args = ["infer", "tiny-demo", "--images", str(root), "--question", "Is there a mass?", "--out", str(out),
            "--max-new-tokens", "2", "--series-frames", "2"]
    assert main(args) == 0
    rows = {json.loads(line)["id"]: json.loads(line) for line in open(out)}
    assert len(rows) == 7
    assert rows["patient1/ct/1.2.826.0.1.3680043.8.498.10"]["images"] == ["patient1/ct/IM4.dcm", "patient1/ct/IM3.dcm"]
    assert json.loads((tmp_path / "pred.settings.json").read_text())["inputs"]["series_frames"] == 2
    # more frames than a series has slices; the option without --images; a folder of which no
    # DICOM file reads: one message naming the option, the series or the file
    for extra, says in ((["--series-frames", "4"],
                         "--series-frames 4: series patient2/mixed/1.2.826.0.1.3680043.8.498.21 has only 3 slices"),
                        (["--images", str(broken_dicom_folder(tmp_path / "broken")), "--series-frames", "1"],
                         "broken/s1.dcm: DICOM file has no pixel data")):
        capsys.readouterr()
        assert main([*args, "--out", str(tmp_path / "p.jsonl"), *extra]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and "Warning" not in err, (extra, err)
        assert not (tmp_path / "p.jsonl").exists()
    assert main(["infer", "tiny-demo", "--data", str(tmp_path), "--series-frames", "2", "--out", "p.jsonl"]) == 2
    assert "--series-frames goes with --images FOLDER" in capsys.readouterr().err


PEFOMED = shutil.which("pefomed")


def run(*args: str, cwd) -> subprocess.CompletedProcess:
    cmd = [PEFOMED, *args] if PEFOMED else [sys.executable, "-m", "pefomed.cli.app", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_dicom_mistakes_through_the_installed_command(tmp_path):
    """A bad --series-frames, and a DICOM folder of which no slice reads (--skip-bad leaves
    nothing): one line naming the option or the folder, exit 2, from the real console script."""
    broken = broken_dicom_folder(tmp_path / "broken")
    images = ("--images", str(broken), "--question", "Mass?")
    for args, says in (((*images, "--series-frames", "0"), "--series-frames must be at least 1, got 0"),
                       ((*images, "--skip-bad"), "broken: nothing to answer (--skip-bad skipped all 2 images)")):
        result = run("infer", "tiny-demo", "--out", "p.jsonl", *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert errors == result.stderr.splitlines()[-1:] and says in errors[0], (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and "Warning" not in result.stderr
        assert not (tmp_path / "p.jsonl").exists()
