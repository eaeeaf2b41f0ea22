"""RaTEScore and GREEN (extra `radeval`) in `pefomed score`, offline.

Random-weight stand-ins with the real architectures (tests/score/ratescore_green_standins.py) sit in a
temporary Hugging Face cache under the real hub ids; nothing is downloaded. pefomed's per-report values
and the installed CLI's METRICS.json must equal RadEval's own calls on the same reports to 1e-6. The
random GREEN judge writes garbage, which RadEval's parser scores 0: that is checked as RadEval's own
parse of the same analyses, not as a hard-coded value.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# find_spec, not importorskip: importing radeval outside pefomed's guard calls nltk.download
pytestmark = [pytest.mark.skipif(importlib.util.find_spec("radeval") is None,
                                 reason="the radeval extra (RadEval) is not installed: pip install 'pefomed[radeval]'"),
              pytest.mark.skipif(shutil.which("pefomed") is None, reason="the pefomed console script is not installed")]
PEFOMED = shutil.which("pefomed")
HERE = Path(__file__).parent
GREEN_REPO = "StanfordAIMI/GREEN-radllama2-7b"
GREEN_MAX_LENGTH, GREEN_BATCH = 400, 3  # the prompts are ~320 tokens; 3: uneven, left-padded batches

PREDICTIONS = ["No acute cardiopulmonary process.", "Mild cardiomegaly with small left pleural effusion.",
               "Right lower lobe consolidation, likely pneumonia.", "There is pulmonary edema and bibasilar atelectasis.",
               "No pneumothorax. Support devices in place.", "", "Left basilar opacity may reflect atelectasis.",
               "Stable fracture of the right clavicle."]
REFERENCES = ["No acute findings. Lungs are clear.", "Cardiomegaly. Small bilateral pleural effusions.",
              "Consolidation in the right lower lobe.", "Mild pulmonary edema. No effusion.",
              "Endotracheal tube in place. No pneumothorax.", "Normal chest radiograph.",
              "Bibasilar atelectasis. Lung lesion in the left upper lobe.", "Healed rib fracture. Enlarged heart."]
EMPTY = 5  # the report without a sentence (RadEval's splitter drops it: pefomed scores it 0.5)
# what the wired judge writes after every prompt (the format of GREEN's prompt): RadEval parses
# 1 clinically significant error and 2 matched findings, GREEN = 2 / (2 + 1)
ANALYSIS = ("[Explanation]:\nThe candidate reports an effusion that the reference does not mention.\n\n"
            "[Clinically Significant Errors]:\n(a) False report of a finding in the candidate: 1. Pleural effusion.\n"
            "(b) Missing a finding present in the reference: 0.\n\n"
            "[Clinically Insignificant Errors]:\n(a) False report of a finding in the candidate: 0.\n\n"
            "[Matched Findings]:\n2. Cardiomegaly; edema.")

# the stand-ins, then RadEval's own calls and pefomed's per-report functions on the same reports (one
# process per hub cache: its location is read once at import)
REFERENCE_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    import ratescore_green_standins as S
    hyps, refs, empty, batch, max_length, analysis = json.loads(Path(sys.argv[2]).read_text())
    hf_home, wired_dir = Path(sys.argv[3]), Path(sys.argv[4])
    S.build_ner(hf_home, hyps + refs)
    S.build_embedding(hf_home, hyps + refs)
    S.build_green(hf_home, refs, hyps, S.GREEN_REPO)
    S.build_green(hf_home, refs, hyps, analysis=analysis, folder=wired_dir)
    from pefomed.errors import UserError
    from pefomed.score import ratescore_green as rg
    from pefomed.score.report_models import _no_nltk_download
    out = {"green": {}}
    try:
        rg._ratescore_module()
    except UserError as exc:  # spaCy 3.7 under numpy 2 (docs/metrics.md)
        out["ratescore_unavailable"] = str(exc)
    else:
        from radeval.metrics.RaTEScore import RaTEScore
        keep = [i for i in range(len(hyps)) if i != empty]
        own, pred_pairs, gt_pairs = RaTEScore().compute_score([hyps[i] for i in keep], [refs[i] for i in keep])
        out["ratescore_radeval"] = dict(zip(map(str, keep), own))
        out["ratescore_pefomed"] = rg.ratescore_scores(hyps, refs).tolist()
        out["entities"] = [len(p) for p in pred_pairs + gt_pairs]
    with _no_nltk_download():
        from radeval.metrics.green_score import GREEN
    for name, judge in (("random", S.GREEN_REPO), ("wired", str(wired_dir))):
        scorer = GREEN(judge, output_dir=".", cpu=True)
        scorer.batch_size, scorer.max_length = batch, max_length
        mean, std, own, frame = scorer(refs, hyps)
        analyses = list(frame["green_analysis"])
        per, pefomed_analyses = rg.green_scores(hyps, refs, judge, batch, max_length)
        out["green"][name] = {"radeval": [float(v) for v in own], "mean": mean, "analyses": analyses,
                              "reparsed": [float(scorer.compute_green(a)) for a in analyses],
                              "pefomed": per.tolist(), "same_analyses": pefomed_analyses == analyses}
    print(json.dumps(out))
""")


def _env(hf_home: Path) -> dict:
    return {**os.environ, "HF_HOME": str(hf_home), "XDG_CACHE_HOME": str(hf_home.parent / "xdg"),
            "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "NO_COLOR": "1"}


def _pred(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"r{i}", "images": [f"img{i // 2}.png"], "task": "report",
                                        "prediction": p, "reference": r, "meta": {"study_id": f"s{i // 2}"}}) + "\n"
                            for i, (p, r) in enumerate(zip(PREDICTIONS, REFERENCES))))
    return path


def _score(*args, env, tmp_path):
    return subprocess.run([PEFOMED, "score", str(_pred(tmp_path / "P.jsonl")), "--no-meteor", "--no-clinical",
                           *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    root = tmp_path_factory.mktemp("ratescore-green")
    texts = root / "texts.json"
    texts.write_text(json.dumps([PREDICTIONS, REFERENCES, EMPTY, GREEN_BATCH, GREEN_MAX_LENGTH, ANALYSIS]))
    env = _env(root / "hf")
    out = subprocess.run([sys.executable, "-c", REFERENCE_SCRIPT, str(HERE), str(texts), str(root / "hf"),
                          str(root / "wired-judge")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return {"env": env, "expected": json.loads(out.stdout.strip().splitlines()[-1]), "wired": root / "wired-judge"}


def _needs_ratescore(expected: dict) -> None:
    if "ratescore_unavailable" in expected:
        pytest.skip("RaTEScore cannot run in this environment (spaCy < 3.8 under numpy 2; docs/metrics.md): "
                    + expected["ratescore_unavailable"][:300])


def test_ratescore_equals_radeval(standins, tmp_path):
    """pefomed's RaTEScore per report equals RadEval's RaTEScore.compute_score (the empty report,
    which RadEval's splitter would drop and so misalign every later pair, scored 0.5, RaTEScore's
    no-entity score), and the CLI's corpus value is their mean, with a study-bootstrap interval."""
    exp = standins["expected"]
    _needs_ratescore(exp)
    assert min(exp["entities"]) > 0, "the stand-in NER model must find entities in every report"
    mine = exp["ratescore_pefomed"]
    for i, value in exp["ratescore_radeval"].items():
        assert mine[int(i)] == pytest.approx(value, abs=1e-6), i
    assert mine[EMPTY] == 0.5
    assert len({round(v, 6) for v in mine}) > 4, "distinct per-report values"
    out = _score("--ratescore", "--resample-unit", "study", "--bootstrap", "200", "-o", tmp_path / "M.json",
                 "--report", tmp_path / "rep", env=standins["env"], tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    entry = json.loads((tmp_path / "M.json").read_text())["ratescore"]["ratescore"]
    assert entry["value"] == pytest.approx(sum(mine) / len(mine), abs=1e-6)
    assert entry["interval"] == "percentile bootstrap" and entry["ci_low"] < entry["value"] < entry["ci_high"]
    assert "| ratescore | ratescore |" in (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")


def test_green_equals_radeval(standins, tmp_path):
    """pefomed's GREEN per report equals RadEval's GREEN call for both judges (same judge, batch
    size, max_length; the same analyses generated): the random judge's garbage gets RadEval's own
    parse of it (no match: 0), the wired judge's analysis 2 / 3. The CLI, given the wired judge as a
    local folder, reports the mean with an interval."""
    exp = standins["expected"]["green"]
    for name, run in exp.items():
        assert run["same_analyses"] and len(run["analyses"]) == len(PREDICTIONS), name
        assert all(a.strip() for a in run["analyses"]), f"{name}: the judge generated something for every pair"
        assert run["pefomed"] == pytest.approx(run["radeval"], abs=1e-6), name
        assert run["radeval"] == run["reparsed"], name
    # RadEval's clean_responses keeps what follows "[Explanation]:"
    written = ANALYSIS.split("[Explanation]:")[1].strip()
    assert all(a.strip() == written for a in exp["wired"]["analyses"]), exp["wired"]["analyses"][0][:500]
    assert exp["wired"]["radeval"] == pytest.approx([2 / 3] * len(PREDICTIONS))
    assert not any(written in a for a in exp["random"]["analyses"])
    out = _score("--green", standins["wired"], "--green-max-length", GREEN_MAX_LENGTH, "--green-batch-size",
                 GREEN_BATCH, "--resample-unit", "study", "--bootstrap", "100", "-o", tmp_path / "M.json",
                 env=standins["env"], tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads((tmp_path / "M.json").read_text())
    entry = m["green"]["green"]
    assert entry["value"] == pytest.approx(exp["wired"]["mean"], abs=1e-6)
    assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
    assert m["settings"]["green"]["max_length"] == GREEN_MAX_LENGTH


def test_green_prompt_longer_than_max_length_is_a_clear_error(standins, tmp_path):
    """A max_length below the prompt would truncate the prompt silently and generate nothing:
    exit 2, naming the row and the flag."""
    out = _score("--green", GREEN_REPO, "--green-max-length", 100, env=standins["env"], tmp_path=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "GREEN" in out.stderr and "'r0'" in out.stderr and "--green-max-length" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_missing_models_are_one_clear_error(tmp_path):
    """An empty cache and no offline switch in the environment: exit 2 before any network call,
    naming the metric and the missing hub id (or, for RaTEScore where spaCy cannot import, why)."""
    env = {k: v for k, v in _env(tmp_path / "hf").items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = _score("--ratescore", env=env, tmp_path=tmp_path)
    assert out.returncode == 2 and "RaTEScore" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "Angelakeke/RaTE-NER-Deberta" in out.stderr or "spaCy" in out.stderr, out.stderr
    out = _score("--green", "no-such-org/no-such-judge", env=env, tmp_path=tmp_path)
    assert out.returncode == 2 and "GREEN" in out.stderr and "no-such-org/no-such-judge" in out.stderr, out.stderr
    assert "--report-models-online" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("*.safetensors"))


def test_metric_names_are_known_to_studies():
    from pefomed.score.specs import metric_name_problem

    assert metric_name_problem("ratescore/ratescore") is None and metric_name_problem("green/green") is None
    assert "green" in metric_name_problem("green/f1")
    # the options' defaults are RadEval's (declared twice: the options module imports no scorer)
    from pefomed.options.score import ScoreOptions
    from pefomed.score import ratescore_green as rg

    defaults = ScoreOptions()
    assert (defaults.ratescore_ner_model, defaults.ratescore_embedding_model) == (rg.RATESCORE_NER,
                                                                                  rg.RATESCORE_EMBEDDING)


def test_a_model_folder_that_is_not_there_is_named(tmp_path):
    """A path is never taken for a hub id (huggingface_hub would reject it with its own traceback)."""
    from pefomed.errors import UserError
    from pefomed.score.ratescore_green import _local_model

    with pytest.raises(UserError, match="no-such-folder.*no config.json"):
        _local_model("GREEN", str(tmp_path / "no-such-folder"), ("green",), "judge model")
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "config.json").write_text("{}")
    _local_model("GREEN", str(tmp_path / "judge"), ("green",), "judge model")  # a folder with a model: accepted
