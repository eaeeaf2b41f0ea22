"""A deterministic, realistic-looking radiology report corpus for the parity tests and benchmark."""

import random

_FINDINGS = [
    "The heart size is normal.", "Mild cardiomegaly is noted.", "No pleural effusion or pneumothorax.",
    "There is a {n} cm nodule in the {side} upper lobe (RUL).", "Lungs are clear; no focal consolidation.",
    "Small {side} pleural effusion, unchanged since {date}.", "Patient's ET tube is {n} cm above the carina.",
    "Bibasilar atelectasis: likely post-operative.", "Possible early pneumonia at the {side} base?",
    "The mediastinal contours are within normal limits.", "Degenerative changes of the thoracic spine.",
    "No acute cardiopulmonary process!", "Pulmonary edema has improved, i.e. decreased vascular congestion.",
    "Interval placement of a {side}-sided PICC line; tip in the SVC.", "It's unchanged, don't worry.",
    "Compared to {date}, opacity increased by {pct}%.", "Calcified granuloma -- stable.",
    "Heart size is {adj}. Dr. Smith was notified at {time}.", "Osseous structures are intact...",
    "There are {count} rib fractures [old], e.g. the {side} 5th rib.", "Cannot exclude a small effusion.",
]
_SIDES = ["left", "right", "Left", "Right"]
_ADJ = ["normal", "enlarged", "borderline", "Stable"]


def _sentence(rng: random.Random) -> str:
    s = rng.choice(_FINDINGS)
    return s.format(n=rng.choice(["2", "3.5", "4", "1,200", "0.8"]), side=rng.choice(_SIDES),
                    date=rng.choice(["01/02/2020", "2019", "3/4/21"]), pct=rng.choice(["10", "50", "5"]),
                    adj=rng.choice(_ADJ), time=rng.choice(["10:30", "9:15"]), count=rng.choice(["two", "3", "several"]))


def _report(rng: random.Random) -> str:
    text = " ".join(_sentence(rng) for _ in range(rng.randint(1, 5)))
    if rng.random() < 0.1:
        text = text.replace(". ", ".\n", 1)  # reports carry newlines
    if rng.random() < 0.05:
        text = text.upper()
    return text


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """n (hypothesis, references) pairs; about a fifth have 2-3 references; a few empty hypotheses."""
    rng = random.Random(seed)
    hyps, refs = [], []
    for i in range(n):
        ref = [_report(rng) for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3))]
        if rng.random() < 0.4:
            # a hypothesis sharing sentences with its reference, so matches are not only chance
            sents = ref[0].replace("\n", " ").split(". ")
            rng.shuffle(sents)
            hyp = ". ".join(sents[: rng.randint(1, len(sents))]) + " " + _sentence(rng)
        else:
            hyp = _report(rng)
        if i % 97 == 5:
            hyp = ""
        hyps.append(hyp)
        refs.append(ref)
    return hyps, refs
