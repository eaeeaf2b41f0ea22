"""Every kind of bad input gets an error that names the file, line or sample."""

from __future__ import annotations

import json
import pickle

import pytest

from dataset_fixtures import (CallsPrint, make_hf_parquet, make_openi_xml, make_pathvqa, make_pmc_vqa, make_r2gen,
                              make_vqa_rad_osf, write_image)
from pefomed.cli.app import main
from pefomed.data.formats import PrepareOptions
from pefomed.data.prepare import prepare, safe_source_path
from pefomed.errors import UserError
from pefomed.io import read_json


def test_truncated_json_names_file_and_line(tmp_path):
    src = make_vqa_rad_osf(tmp_path / "osf")
    path = src / "VQA_RAD Dataset Public.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(UserError, match=r"VQA_RAD Dataset Public\.json:\d+: malformed JSON"):
        prepare(src, "vqa-rad", tmp_path / "out")


def test_missing_image_fails_then_skip_bad_lists_it(tmp_path):
    src = make_vqa_rad_osf(tmp_path / "osf")
    (src / "VQA_RAD Image Folder" / "synpic3.jpg").unlink()
    with pytest.raises(UserError, match=r"test vqa-rad-5: image not found: .*synpic3\.jpg"):
        prepare(src, "vqa-rad", tmp_path / "out")
    m = prepare(src, "vqa-rad", tmp_path / "out", PrepareOptions(skip_bad=True))
    assert [(s["id"], s["split"]) for s in m["skipped"]] == [("vqa-rad-5", "test")]
    assert "synpic3.jpg" in m["skipped"][0]["reason"] and m["counts"]["images_missing"] == 1


def test_unreadable_image_is_reported(tmp_path):
    src = make_vqa_rad_osf(tmp_path / "osf")
    (src / "VQA_RAD Image Folder" / "synpic2.jpg").write_bytes(b"not a jpeg")
    m = prepare(src, "vqa-rad", tmp_path / "out", PrepareOptions(skip_bad=True))
    assert sorted(s["id"] for s in m["skipped"]) == ["vqa-rad-3", "vqa-rad-4"]
    assert m["counts"]["images_unreadable"] == 1 and "unreadable" in m["skipped"][0]["reason"]


@pytest.mark.parametrize("bad", ["../outside.jpg", "/etc/passwd", "sub/../../x.jpg"])
def test_image_path_escaping_the_root_is_rejected(tmp_path, bad):
    src = make_r2gen(tmp_path / "r2gen")
    ann = read_json(src / "annotation.json")
    ann["train"][0]["image_path"] = [bad]
    (src / "annotation.json").write_text(json.dumps(ann))
    write_image(tmp_path / "r2gen" / "outside.jpg", "x")
    with pytest.raises(UserError, match=r"sample CXR1_IM-0001: image path .*(contains '\.\.'|outside the dataset root)"):
        prepare(src, "r2gen", tmp_path / "out", PrepareOptions(skip_bad=True))


def test_safe_source_path_accepts_paths_inside(tmp_path):
    (tmp_path / "a").mkdir()
    assert safe_source_path(str(tmp_path / "a" / "x.png"), tmp_path, "s") == (tmp_path / "a" / "x.png").resolve()
    assert safe_source_path("a/x.png", tmp_path, "s") == (tmp_path / "a" / "x.png").resolve()


def test_pickle_carrying_a_callable_is_refused(tmp_path, capsys):
    src = make_pathvqa(tmp_path / "pvqa")
    with open(src / "split" / "qas" / "val" / "val_qa.pkl", "wb") as handle:
        pickle.dump([{"image": "val_0001", "question": "q", "answer": CallsPrint()}], handle)
    with pytest.raises(UserError, match=r"val_qa\.pkl: refused to load: .*builtins\.print"):
        prepare(src, "pathvqa", tmp_path / "out")
    assert "must never run" not in capsys.readouterr().out


def test_truncated_pickle(tmp_path):
    src = make_pathvqa(tmp_path / "pvqa")
    path = src / "split" / "qas" / "train" / "train_qa.pkl"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(UserError, match=r"train_qa\.pkl: malformed pickle"):
        prepare(src, "pathvqa", tmp_path / "out")


def test_malformed_xml_names_file_and_line(tmp_path):
    src = make_openi_xml(tmp_path / "openi", studies=3)
    path = src / "ecgen-radiology" / "2.xml"
    path.write_text(path.read_text().replace("</Abstract>", "</Abstrac>"))
    with pytest.raises(UserError, match=r"2\.xml:\d+: malformed XML"):
        prepare(src, "openi", tmp_path / "out")


def test_openi_empty_section_needs_skip_bad(tmp_path):
    src = make_openi_xml(tmp_path / "openi", studies=5, empty_findings=(2,))
    with pytest.raises(UserError, match=r"CXR2 \(.*2\.xml\): empty findings"):
        prepare(src, "openi", tmp_path / "out")
    m = prepare(src, "openi", tmp_path / "out", PrepareOptions(skip_bad=True))
    assert [s["id"] for s in m["skipped"]] == ["CXR2"]
    assert sum(v["samples"] for v in m["splits"].values()) == 4
    # the impression of the same study is fine
    m = prepare(src, "openi", tmp_path / "imp", PrepareOptions(section="impression"))
    assert sum(v["samples"] for v in m["splits"].values()) == 5


def test_malformed_csv_names_file_and_line(tmp_path):
    src = make_pmc_vqa(tmp_path / "pmc")
    with open(src / "train.csv", "a") as handle:
        handle.write('PMC9.jpg,"Unclosed quote,x,A:1,B:2,C:3,D:4,A\n')
    with pytest.raises(UserError, match=r"train\.csv:\d+: (malformed CSV|fewer cells)"):
        prepare(src, "pmc-vqa", tmp_path / "out")


def test_ragged_csv_row(tmp_path):
    src = make_pmc_vqa(tmp_path / "pmc")
    with open(src / "train.csv", "a") as handle:
        handle.write("PMC9.jpg,q,a,A:1,B:2,C:3,D:4,A,extra\n")
    with pytest.raises(UserError, match=r"train\.csv:4: 9 cells, the header has 8"):
        prepare(src, "pmc-vqa", tmp_path / "out")


def test_parquet_shard_without_split_name(tmp_path):
    src = make_hf_parquet(tmp_path / "hf")
    (src / "data" / "test-00000-of-00001.parquet").rename(src / "data" / "shard-0.parquet")
    with pytest.raises(UserError, match=r"shard-0\.parquet: cannot tell the split"):
        prepare(src, "hf-parquet", tmp_path / "out")


def test_bad_answer_type_names_record(tmp_path):
    src = make_vqa_rad_osf(tmp_path / "osf")
    path = src / "VQA_RAD Dataset Public.json"
    recs = json.loads(path.read_text())
    recs[3]["answer_type"] = "MAYBE"
    path.write_text(json.dumps(recs))
    with pytest.raises(UserError, match=r"record 3 \(qid 4\): answer_type 'MAYBE'"):
        prepare(src, "vqa-rad", tmp_path / "out")


def test_cli_prints_the_error_and_exits_2(tmp_path, capsys):
    src = make_vqa_rad_osf(tmp_path / "osf")
    (src / "VQA_RAD Image Folder" / "synpic1.jpg").unlink()
    code = main(["prepare", str(src), "--format", "vqa-rad", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "synpic1.jpg" in err and "Traceback" not in err
    code = main(["prepare", str(src), "--format", "vqa-rad", "--out", str(tmp_path / "out"), "--skip-bad"])
    assert code == 0 and json.loads((tmp_path / "out" / "manifest.json").read_text())["skipped"]


def test_unknown_format(tmp_path):
    with pytest.raises(UserError, match="unknown format 'nope'"):
        (tmp_path / "src").mkdir()
        prepare(tmp_path / "src", "nope", tmp_path / "out")
