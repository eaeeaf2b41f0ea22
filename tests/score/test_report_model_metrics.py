"""F1-CheXbert, RadGraph F1 and BERTScore (extra `radeval`) in `pefomed score`, offline.

Random-weight stand-ins with RadEval's real architectures (tests/score/report_model_standins.py)
are written where RadEval looks for its weights, in a temporary hub cache and XDG cache; nothing
is downloaded. The installed CLI's METRICS.json must equal RadEval's own calls on the same reports
(to 1e-6), every CheXbert aggregation included; missing weights are one clear error (exit 2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("radeval", reason="the radeval extra (RadEval) is not installed: pip install 'pefomed[radeval]'")

PEFOMED = shutil.which("pefomed")
pytestmark = pytest.mark.skipif(PEFOMED is None, reason="the pefomed console script is not installed")
HERE = Path(__file__).parent

PREDICTIONS = ["No acute cardiopulmonary process.", "Mild cardiomegaly with small left pleural effusion.",
               "Right lower lobe consolidation, likely pneumonia.", "There is pulmonary edema and bibasilar atelectasis.",
               "No pneumothorax. Support devices in place.", "Heart size is normal. Lungs are clear.",
               "Left basilar opacity may reflect atelectasis.", "Stable fracture of the right clavicle."]
REFERENCES = ["No acute findings. Lungs are clear.", "Cardiomegaly. Small bilateral pleural effusions.",
              "Consolidation in the right lower lobe.", "Mild pulmonary edema. No effusion.",
              "Endotracheal tube in place. No pneumothorax.", "Normal chest radiograph.",
              "Bibasilar atelectasis. Lung lesion in the left upper lobe.", "Healed rib fracture. Enlarged cardiomediastinum."]

# RadEval's own calls on the same reports, with the stand-ins built first (one process: the hub
# cache location is read once at import)
REFERENCE_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    import report_model_standins as S
    hyps, refs = json.loads(Path(sys.argv[2]).read_text())
    hf_home, xdg, radgraph_dir = map(Path, sys.argv[3:6])
    snap = S.build_backbone(hf_home, hyps + refs)
    # one folder for both, as report_models_dir takes them
    S.build_chexbert(radgraph_dir, hyps + refs)
    S.build_radgraph(radgraph_dir, str(snap))
    from pefomed.score.report_models import _no_nltk_download, _radgraph_module
    with _no_nltk_download():
        from radeval.metrics.f1chexbert import F1CheXbert
        from radeval.metrics.bertscore.bertscore import BertScore
    core = _radgraph_module()
    import radeval.metrics.f1chexbert.f1chexbert as chexbert_module
    chexbert_module.CACHE_DIR = str(radgraph_dir)  # where F1CheXbert looks for its checkpoint
    scorer = F1CheXbert(device="cpu")
    labels_h, labels_r = scorer.get_labels(hyps), scorer.get_labels(refs)
    # what F1CheXbert.forward computes from those labels (forward itself stops on scikit-learn 1.9,
    # whose _check_targets returns one more value than RadEval 2.2.1 unpacks: docs/metrics.md)
    import warnings
    from sklearn.metrics import accuracy_score, classification_report
    warnings.simplefilter("ignore")
    refs5 = [[r[i] for i in scorer.top5_idx] for r in labels_r]
    hyps5 = [[h[i] for i in scorer.top5_idx] for h in labels_h]
    cr = classification_report(labels_r, labels_h, target_names=scorer.TARGET_NAMES, output_dict=True)
    cr5 = classification_report(refs5, hyps5, target_names=scorer.TOP5, output_dict=True)
    accuracy = accuracy_score(refs5, hyps5)
    mean_reward = core.F1RadGraph(reward_level="all", model_type="radgraph-xl",
                                  model_cache_dir=str(radgraph_dir), cuda=-1)(refs=refs, hyps=hyps)[0]
    bert_f1 = BertScore(model_type=str(snap), num_layers=2, rescale_with_baseline=False)(refs=refs, hyps=hyps)[0]
    print(json.dumps({"cr": cr, "cr5": cr5, "accuracy": accuracy, "radgraph": list(map(float, mean_reward)),
                      "bertscore": bert_f1, "backbone": str(snap), "labels": [labels_h, labels_r]}))
""")


def _env(hf_home: Path, xdg: Path) -> dict:
    return {**os.environ, "HF_HOME": str(hf_home), "XDG_CACHE_HOME": str(xdg), "HF_HUB_OFFLINE": "1",
            "COLUMNS": "200", "NO_COLOR": "1"}


def _pred(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"r{i}", "images": [f"img{i // 2}.png"], "task": "report",
                                        "prediction": p, "reference": r, "meta": {"study_id": f"s{i // 2}"}}) + "\n"
                            for i, (p, r) in enumerate(zip(PREDICTIONS, REFERENCES))))
    return path


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-models")
    texts = root / "texts.json"
    texts.write_text(json.dumps([PREDICTIONS, REFERENCES]))
    hf_home, xdg, radgraph_dir = root / "hf", root / "xdg", root / "radgraph-models"
    env = _env(hf_home, xdg)
    out = subprocess.run([sys.executable, "-c", REFERENCE_SCRIPT, str(HERE), str(texts), str(hf_home), str(xdg),
                          str(radgraph_dir)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    expected = json.loads(out.stdout.strip().splitlines()[-1])
    return {"root": root, "env": env, "radgraph_dir": radgraph_dir, "expected": expected}


def test_cli_equals_radeval_calls(standins, tmp_path):
    """Every CheXbert aggregation (micro, macro, weighted, samples over 14 and 5 classes, per
    class, 5-class accuracy), RadGraph F1 at its three levels and BERTScore, as METRICS.json and
    report.md give them, equal RadEval's own numbers; each has a study-bootstrap interval."""
    exp = standins["expected"]
    labels_h, labels_r = exp["labels"]
    assert len({tuple(h) for h in labels_h}) > 3, "the stand-in labeler must not give every report one label"
    out = subprocess.run([PEFOMED, "score", str(_pred(tmp_path / "P.jsonl")), "--chexbert", "--radgraph",
                          "radgraph-xl", "--report-models-dir", str(standins["radgraph_dir"]), "--bertscore",
                          exp["backbone"], "--bertscore-layers", "2", "--no-meteor", "--resample-unit", "study",
                          "--bootstrap", "200", "-o", str(tmp_path / "M.json"), "--report", str(tmp_path / "rep")],
                         capture_output=True, text=True, env=standins["env"], timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads((tmp_path / "M.json").read_text())
    chex = m["chexbert"]
    checked = 0
    for suffix, cr in (("14", exp["cr"]), ("5", exp["cr5"])):
        for avg in ("micro", "macro", "weighted", "samples"):
            for metric, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
                entry = chex[f"{metric}_{avg}/{suffix}"]
                assert entry["value"] == pytest.approx(cr[f"{avg} avg"][key], abs=1e-6), (metric, avg, suffix)
                assert entry["ci_low"] <= entry["value"] + 1e-9 and entry["ci_high"] >= entry["value"] - 1e-9
                checked += 1
    for name in exp["cr"]:
        if name.endswith(" avg"):
            continue
        for metric, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert chex[f"{metric}/{name}"]["value"] == pytest.approx(exp["cr"][name][key], abs=1e-6), (metric, name)
            checked += 1
    assert checked == 24 + 42
    assert chex["accuracy/5"]["value"] == pytest.approx(exp["accuracy"], abs=1e-6)
    for level, value in zip(("simple", "partial", "complete"), exp["radgraph"]):
        assert m["radgraph"][f"f1_{level}"]["value"] == pytest.approx(value, abs=1e-6)
    assert m["bertscore"]["f1"]["value"] == pytest.approx(exp["bertscore"], abs=1e-6)
    assert m["radgraph"]["f1_partial"]["interval"] == "percentile bootstrap"
    # the rule-based labeler is still there, under its own name
    assert "f1_micro/14" in m["clinical"]
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "| chexbert | f1_weighted/14 |" in md and "| radgraph | f1_complete |" in md


def test_missing_weights_is_one_clear_error(tmp_path):
    """No stand-ins at all and no offline switch in the environment: the CLI fails before any
    network call, naming the metric, the missing file and where to put it (exit 2, no traceback)."""
    env = {k: v for k, v in _env(tmp_path / "hf", tmp_path / "xdg").items() if k not in ("HF_HUB_OFFLINE",
                                                                                          "TRANSFORMERS_OFFLINE")}
    pred = _pred(tmp_path / "P.jsonl")
    out = subprocess.run([PEFOMED, "score", str(pred), "--chexbert", "--no-meteor"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "F1-CheXbert" in out.stderr and "chexbert.pth" in out.stderr and "StanfordAIMI/RRG_scorers" in out.stderr
    assert str(tmp_path / "xdg" / "chexbert") in out.stderr  # RadEval's own cache, the default
    assert "--report-models-dir" in out.stderr and "--report-models-online" in out.stderr
    assert "Traceback" not in out.stderr
    empty = tmp_path / "empty"
    out = subprocess.run([PEFOMED, "score", str(pred), "--radgraph", "radgraph-xl", "--report-models-dir", str(empty),
                          "--no-meteor"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "RadGraph F1" in out.stderr and str(empty / "radgraph-xl") in out.stderr, out.stderr
    assert not empty.exists() or not any(empty.iterdir()), "nothing may be created or fetched"
    out = subprocess.run([PEFOMED, "score", str(pred), "--bertscore", "no-such-org/no-such-model", "--bertscore-layers",
                          "2", "--no-meteor"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "BERTScore" in out.stderr and "no-such-org/no-such-model" in out.stderr, out.stderr
