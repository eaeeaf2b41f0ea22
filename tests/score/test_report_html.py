"""report.html, the page a researcher reads: provenance, the majority-answer reference, an error
analysis with embedded thumbnails; one self-contained file, every user string escaped. Checked
with the stdlib HTML parser, and rendered by headless Chromium where one is installed."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from pefomed.records import Sample, write_split
from pefomed.score import error_analysis
from pefomed.score.run import score_files

SCRIPT_QUESTION = "<script>alert('x')</script> is the lung <b>clear</b>?"


class Page(HTMLParser):
    """The parts of the page the tests look at."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, str] = {}  # id -> its text
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self._open: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "section":
            self._open.append(attrs.get("id", ""))
            self.sections.setdefault(attrs.get("id", ""), "")

    def handle_endtag(self, tag):
        if tag == "section" and self._open:
            self._open.pop()

    def handle_data(self, data):
        self.text.append(data)
        for sid in self._open:
            self.sections[sid] += data

    def all_text(self) -> str:
        return "".join(self.text)


def _image(path: Path, color=(120, 60, 30), size=(400, 300)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


@pytest.fixture()
def vqa_run(tmp_path):
    """A DATA_DIR (train + images) and a PRED.jsonl answered from it, with its settings file."""
    data = tmp_path / "data"
    for i in range(4):
        _image(data / "images" / f"im{i}.png", (40 * i, 90, 160))
    train = [("yes", "closed", "PRES")] * 3 + [("no", "closed", "PRES")] + [("lung", "open", "POS")] * 2 \
        + [("liver", "open", "POS")] + [("no", "closed", "SIZE")] * 2
    write_split(data, "train", [Sample(id=f"t{i}", task="vqa", images=["images/im0.png"], answer=a, question="q?",
                                       answer_type=t, meta={"question_type": qt})
                                for i, (a, t, qt) in enumerate(train)])
    # (prediction, reference, answer_type, question_type, image)
    rows = [("yes", "yes", "closed", "PRES", "images/im0.png"),
            ("yes", "no", "closed", "PRES", "images/im1.png"),
            ("no", "no", "closed", "PRES", "images/im2.png"),
            ("no", "yes", "closed", "PRES", "images/missing.png"),
            ("lung", "lung", "open", "POS", "images/im3.png"),
            ("heart", "liver", "open", "POS", "../outside.png"),
            ("heart", "lung", "open", "POS", "images/im1.png"),
            ("yes", "yes", "closed", "SIZE", "images/im2.png")]
    pred = tmp_path / "run" / "pred.jsonl"
    pred.parent.mkdir()
    pred.write_text("".join(json.dumps({
        "id": f"q{i}", "images": [img], "question": SCRIPT_QUESTION if i == 1 else f"question {i}?",
        "prediction": p, "reference": r, "answer_type": t, "task": "vqa", "meta": {"question_type": qt}}) + "\n"
        for i, (p, r, t, qt, img) in enumerate(rows)))
    (tmp_path / "outside.png").write_bytes((data / "images" / "im0.png").read_bytes())
    settings = {"model": {"kind": "run", "source": str(tmp_path / "runs" / "demo")}, "base_model": "tiny",
                "inputs": {"data": str(data), "split": "test"},
                "prompt": {"system_prompt": None, "vqa_template": "{question} Answer with one word.",
                           "shots": 0, "exemplars": {f"q{i}": ["t1"] for i in range(8)}},
                "generation": {"max_new_tokens": 16, "num_beams": 3, "stop": ["\n"], "seed": 7}}
    (pred.parent / "pred.settings.json").write_text(json.dumps(settings))
    return pred, data


def _report(pred, tmp_path, **options):
    options.setdefault("bootstrap", 20)
    metrics = score_files([pred], report=tmp_path / "rep", **options)
    return metrics, (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")


def test_structure_provenance_and_escaping(vqa_run, tmp_path):
    pred, data = vqa_run
    _, text = _report(pred, tmp_path)
    page = Page(text)
    for section in ("provenance", "metrics", "plots", "error-analysis", "scoring"):
        assert section in page.sections, section
    # self-contained: every image is a data: URI, nothing is fetched from a network
    imgs = [a for tag, a in page.tags if tag == "img"]
    assert imgs and all(a["src"].startswith("data:image/jpeg;base64,") for a in imgs)
    for tag, attrs in page.tags:
        for key in ("src", "href"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(key) or ""), (tag, attrs)
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe")]
    # the <script> question is text on the page, never markup
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert SCRIPT_QUESTION in page.sections["error-analysis"]
    assert not [t for t, _ in page.tags if t == "b"]
    # provenance: run, data and its manifest checksum, split, prompt, generation, version, date, options
    prov = page.sections["provenance"]
    manifest_sha = hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()
    for expected in (str(tmp_path / "runs" / "demo"), str(data), manifest_sha, "split", "test",
                     "{question} Answer with one word.", "8 questions with exemplars", "num_beams", "git commit",
                     "scored at (UTC)", "version"):
        assert expected in prov, expected
    assert re.search(r"scored at \(UTC\)\d{4}-\d\d-\d\dT", prov)
    assert "--vqa-convention" in page.sections["scoring"] and "exact" in page.sections["scoring"]
    # structured values are tables and definition lists, never a Python repr
    assert not re.search(r"\{'|'\}|\[\{|\['|': ", page.all_text())
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "## Provenance" in md and manifest_sha in md and "majority answer" in md
    assert not re.search(r"\{'|'\}|\[\{|\['|': ", md)


def test_majority_answer_reference_uses_training_answers(vqa_run, tmp_path):
    pred, _ = vqa_run
    metrics, text = _report(pred, tmp_path)
    extras = error_analysis.report_extras([pred], [_rows(pred)], [], _opts())
    base = extras["baseline"]
    assert base["source"] == "train" and base["note"] is None
    by = base["metrics"]
    # training: closed "yes" 3 vs "no" 3 (PRES 1 + SIZE 2) -> tie, alphabetical: "no"; open: "lung" 2 of 3
    assert by["closed"]["answer"] == "no" and by["closed"]["value"] == pytest.approx(2 / 5)
    assert by["open"]["answer"] == "lung" and by["open"]["value"] == pytest.approx(2 / 3)
    assert by["question_type/PRES"]["answer"] == "yes" and by["question_type/PRES"]["value"] == pytest.approx(2 / 4)
    assert by["question_type/SIZE"]["answer"] == "no" and by["question_type/SIZE"]["value"] == 0.0
    # overall: "no" and "yes" 3 each, "lung" 2 -> "no": right on the 2 "no" references of 8
    assert by["overall"]["answer"] == "no" and by["overall"]["value"] == pytest.approx(2 / 8)
    assert set(by) == {name for name in metrics["vqa"] if name != "closed_yesno_first_word"}
    # in the table beside each number, and as the dashed tick of the chart
    assert "0.5000 (“yes”)" in text and "majority answer" in text
    assert text.count('class="reference"') == len(by)


def test_compare_names_both_sides_and_draws_the_reference_for_both(vqa_run, tmp_path):
    pred, _ = vqa_run
    other = tmp_path / "b.jsonl"
    other.write_text("".join(json.dumps({**json.loads(line), "prediction": ""}) + "\n"
                             for line in pred.read_text().splitlines()))
    score_files([pred], compare=other, bootstrap=20, report=tmp_path / "rep")
    page = Page((tmp_path / "rep" / "report.html").read_text(encoding="utf-8"))
    prov = page.sections["provenance"]
    assert f"Predictions (A): {pred}" in prov and f"Predictions (B): {other}" in prov
    assert "no b.settings.json beside b.jsonl" in prov
    assert "(empty)" not in page.sections["error-analysis"]  # the error analysis is A's
    assert "compare" in page.sections


def test_majority_without_training_split_says_so(vqa_run, tmp_path):
    pred, _ = vqa_run
    (pred.parent / "pred.settings.json").unlink()
    _, text = _report(pred, tmp_path)
    page = Page(text)
    assert "no pred.settings.json beside pred.jsonl" in page.sections["metrics"]
    assert "most frequent REFERENCE answer of the scored file itself" in page.sections["metrics"]
    assert "(no PRED.settings.json names a DATA_DIR)" in page.sections["error-analysis"]


def test_error_analysis_samples_are_seeded_and_missing_images_are_placeholders(vqa_run, tmp_path):
    pred, _ = vqa_run
    _, text = _report(pred, tmp_path)
    page = Page(text)
    errors = page.sections["error-analysis"]
    assert "seed 0" in errors
    assert "PRES (4 rows: 2 wrong, 2 right)" in errors and "POS (3 rows: 2 wrong, 1 right)" in errors
    assert "images/missing.png: image not found" in errors
    # a path outside DATA_DIR is refused by resolve_image, not embedded
    assert "must be relative to the DATA_DIR and stay inside it" in errors
    imgs = [a for tag, a in page.tags if tag == "img"]
    assert len(imgs) == 6  # 8 rows, 2 without a usable image
    # thumbnails are downscaled: 400x300 -> 160x120
    import base64
    import io

    thumb = Image.open(io.BytesIO(base64.b64decode(imgs[0]["src"].split(",", 1)[1])))
    assert thumb.size == (160, 120)


def test_sample_sizes_seed_and_only_sampled_images_are_read(tmp_path, monkeypatch):
    from pefomed.data import images

    folder = tmp_path / "imgs"
    _image(folder / "one.png")
    rows = [{"id": f"r{i}", "images": ["one.png" if i == 3 else f"gone{i}.png"], "question": "q?",
             "prediction": "no", "reference": "yes" if i % 3 else "no", "answer_type": "closed", "task": "vqa"}
            for i in range(60)]
    pred = tmp_path / "p.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "p.settings.json").write_text(json.dumps({"inputs": {"images": str(folder), "question": "q?"}}))
    calls = []
    real = images.load_image
    monkeypatch.setattr(images, "load_image", lambda path, *a, **k: calls.append(path) or real(path, *a, **k))

    def sample(seed):
        extras = error_analysis.report_extras([pred], [_rows(pred)], [], _opts(seed=seed))
        (section,) = extras["errors"]["sections"]
        assert section["by"] == "answer_type"
        (group,) = section["groups"]
        return group

    first = sample(0)
    cards = first["cards"]
    assert [c["correct"] for c in cards] == [False] * 5 + [True] * 3
    assert (first["wrong"], first["right"]) == (40, 20)
    assert len(calls) <= 8  # the sampled rows' images only, never all 60
    assert [c["id"] for c in sample(0)["cards"]] == [c["id"] for c in cards]
    assert [c["id"] for c in sample(1)["cards"]] != [c["id"] for c in cards]


def test_report_rows_by_finding_with_disagreeing_labels(tmp_path):
    refs = ["There is a small left pleural effusion. Heart size is enlarged.", "No pleural effusion. Cardiomegaly.",
            "Small right pleural effusion.", "Normal chest."]
    preds = ["No pleural effusion. Cardiomegaly.", "No pleural effusion. Cardiomegaly.",
             "Small right pleural effusion.", "Normal chest."]
    pred = tmp_path / "r.jsonl"
    pred.write_text("".join(json.dumps({"id": f"s{i}", "images": [f"x{i}.png"], "task": "report",
                                        "prediction": p, "reference": r}) + "\n"
                            for i, (p, r) in enumerate(zip(preds, refs))))
    _, text = _report(pred, tmp_path, meteor=False)
    errors = Page(text).sections["error-analysis"]
    assert "Pleural Effusion (2 rows: 1 wrong, 1 right)" in errors
    assert "Cardiomegaly (2 rows: 0 wrong, 2 right)" in errors
    # the wrong card lists the finding whose labels disagree, in words
    assert "Pleural Effusionpositivenegative" in errors
    assert "x0.png: image not found" in errors


def test_large_report_files_label_a_seeded_subset(tmp_path, monkeypatch):
    monkeypatch.setattr(error_analysis, "REPORT_SCAN", 3)
    pred = tmp_path / "r.jsonl"
    pred.write_text("".join(json.dumps({"id": f"s{i}", "task": "report", "prediction": "No pleural effusion.",
                                        "reference": "Small pleural effusion."}) + "\n" for i in range(5)))
    extras = error_analysis.report_extras([pred], [_rows(pred)], [], _opts())
    (section,) = extras["errors"]["sections"]
    assert (section["scanned"], section["total"]) == (3, 5)
    by = {g["group"]: g for g in section["groups"]}
    assert by["Pleural Effusion"]["wrong"] == 3 and by["No Finding"]["wrong"] == 3  # "No effusion" is No Finding


def test_settings_path_rule_matches_infer():
    from pefomed.infer.run import settings_path as infer_rule
    from pefomed.score.provenance import settings_path

    for name in ("pred.jsonl", "a.b.jsonl", "answers", "x.json"):
        assert settings_path(Path("/r") / name) == infer_rule(Path("/r") / name)


def test_no_git_checkout_is_a_sentence_not_an_error(monkeypatch):
    from pefomed.score import provenance

    monkeypatch.setenv("PATH", "")  # no git executable at all
    info = provenance.tool_info()
    assert info["git commit"] == "not available (not run from a git checkout)" and info["version"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium installed (apt-get install chromium)")
def test_chromium_renders_the_report_without_errors(vqa_run, tmp_path):
    pred, _ = vqa_run
    _report(pred, tmp_path)
    page = tmp_path / "rep" / "report.html"
    # --no-sandbox: CI containers run as root, where Chromium refuses its sandbox
    res = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    for section in ('id="provenance"', 'id="metrics"', 'id="plots"', 'id="error-analysis"', "<svg", "<img"):
        assert section in dom, section
    # console messages are JS errors or blocked loads (the page's Content-Security-Policy forbids
    # any network): there must be none
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []


def _rows(pred):
    from pefomed.score.rows import read_rows

    return read_rows(pred)


def _opts(**kw):
    from pefomed.options.score import ScoreOptions

    return ScoreOptions.from_kwargs({"bootstrap": 0, **kw})
