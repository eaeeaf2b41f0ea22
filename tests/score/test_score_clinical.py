"""The CheXpert-style labeler on hand-written sentences whose labels were checked by reading them,
and CE precision/recall/F1 arithmetic."""

import numpy as np
import pytest

from pefomed.score.clinical import confusion, label_matrix, label_report

# (sentence, {observation: expected label}); observations not listed must be None
# (except "No Finding", checked where listed).
CASES = [
    ("No pleural effusion, pneumothorax or consolidation.",
     {"Pleural Effusion": 0, "Pneumothorax": 0, "Consolidation": 0, "No Finding": 1}),
    ("Cannot exclude a small left pleural effusion.", {"Pleural Effusion": -1}),
    ("Mild cardiomegaly.", {"Cardiomegaly": 1}),
    ("The heart size is normal. Lungs are clear.", {"Cardiomegaly": 0, "No Finding": 1}),
    ("Possible early pneumonia at the right base.", {"Pneumonia": -1}),
    ("Right lower lobe opacity may represent atelectasis.", {"Lung Opacity": 1, "Atelectasis": -1}),
    ("ET tube terminates 4 cm above the carina. Bibasilar atelectasis.",
     {"Support Devices": 1, "Atelectasis": 1}),
    ("Pulmonary edema has resolved.", {"Edema": 0, "No Finding": 1}),
    ("No effusion, but there is mild bibasilar atelectasis.", {"Pleural Effusion": 0, "Atelectasis": 1}),
    ("Lungs are free of consolidation or edema.", {"Consolidation": 0, "Edema": 0}),
    ("Without evidence of pneumothorax. Large right pleural effusion.",
     {"Pneumothorax": 0, "Pleural Effusion": 1, "No Finding": None}),
    ("Small pericardial effusion.", {"Pleural Effusion": None}),
    ("Healed fracture of the left 5th rib.", {"Fracture": 1}),
    ("Pneumothorax?", {"Pneumothorax": -1}),
    ("A 2 cm nodule in the right upper lobe; no consolidation.", {"Lung Lesion": 1, "Consolidation": 0}),
    ("Widened mediastinum.", {"Enlarged Cardiomediastinum": 1}),
    # "likely" is not an uncertainty cue of the CheXpert labeler ("less likely" is): positive.
    ("No pneumonia. Left basilar consolidation, likely atelectasis.",
     {"Pneumonia": 0, "Consolidation": 1, "Atelectasis": 1}),
    ("Pleural thickening at the apex.", {"Pleural Other": 1}),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_labeler_on_hand_checked_sentences(text, expected):
    labels = label_report(text)
    for obs, value in expected.items():
        assert labels[obs] == value, (obs, labels)
    for obs, value in labels.items():
        if obs not in expected and obs != "No Finding":
            assert value is None, (obs, labels)


def test_no_finding_off_when_pathology_uncertain():
    assert label_report("Possible small effusion.")["No Finding"] is None


def test_uncertain_policies():
    text = ["Cannot exclude pneumonia."]
    col = 7  # Pneumonia
    assert label_matrix(text, "positive")[0, col] == 1
    assert label_matrix(text, "negative")[0, col] == 0
    assert np.isnan(label_matrix(text, "ignore")[0, col])


def test_ce_scores_on_a_small_corpus(tmp_path):
    import json

    from pefomed.score.run import score_files

    pairs = [("Mild cardiomegaly. Small left pleural effusion.", "Cardiomegaly. Left pleural effusion."),  # 2 TP
             ("No effusion.", "Small right effusion."),  # FN effusion
             ("Bibasilar atelectasis.", "Lungs are clear."),  # FP atelectasis
             ("Possible edema.", "Pulmonary edema.")]  # uncertain vs positive
    path = tmp_path / "PRED.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "images": [], "question": "", "prediction": p, "reference": r,
                                        "task": "report"}) + "\n" for i, (p, r) in enumerate(pairs)))
    pos = score_files([path], bootstrap=0, meteor=False, uncertain="positive")["clinical"]
    # 5-label, uncertain positive: TP = cardiomegaly, effusion, edema = 3; FP = atelectasis = 1; FN = effusion = 1
    assert pos["precision_micro/5"]["value"] == pytest.approx(3 / 4)
    assert pos["recall_micro/5"]["value"] == pytest.approx(3 / 4)
    neg = score_files([path], bootstrap=0, meteor=False, uncertain="negative")["clinical"]
    # edema becomes a FN: TP 2, FP 1, FN 2
    assert neg["recall_micro/5"]["value"] == pytest.approx(2 / 4)
    assert neg["f1_micro/5"]["uncertain"] == "negative"
    ign = score_files([path], bootstrap=0, meteor=False, uncertain="ignore")["clinical"]
    assert ign["recall_micro/5"]["value"] == pytest.approx(2 / 3)


def test_confusion_ignores_nan_pairs():
    c = confusion(np.array([[1.0, np.nan]]), np.array([[1.0, 1.0]]))
    assert c.tolist() == [[[1, 0, 0], [0, 0, 0]]]
