"""Phrase tables of the clinical-efficacy labeler (pefomed/score/clinical.py).

Written for pefomed after studying the CheXpert labeler (github stanfordmlgroup/chexpert-labeler,
`phrases/mention`, `phrases/unmention` and `patterns/`): the same observation classes and the same
kinds of trigger phrases, expressed here as regular expressions over the lower-cased, cleaned
sentence. Where a table deliberately departs from the CheXpert lists the entry says so ("ours").

Every pattern is a regex fragment; clinical.py joins each list into one compiled alternation.
"""

from __future__ import annotations

# --- Stage 1: mentions ------------------------------------------------------------------------
# observation -> phrases that mention it (positive, negated or uncertain: classification decides).
MENTIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        r"\bcardiomediastinum\b", r"\bmediastinum\b", r"\bcontours?\b",
        r"mediastinal (?:configuration|silhouette|width|widening)",
        r"\bpericardial silhouette", r"\bwidened mediastin\w*",
    ),
    "Cardiomegaly": (
        r"\bcardiomegaly\b", r"\bheart\b", r"\bcardiac (?:enlargement|size|shadow|contours?|silhouette)\b",
    ),
    "Lung Lesion": (
        r"\bmass(?:es)?\b", r"\bnodules?\b", r"\bnodular (?:densit(?:y|ies)|opacit(?:y|ies)|opacification)",
        r"\blump\b", r"\bcavitary lesions?\b", r"\bcarcinoma\b", r"\bneoplasm\w*", r"\btumou?rs?\b",
        r"\blung lesions?\b", r"\bpulmonary lesions?\b",  # ours: the class's own name
    ),
    "Lung Opacity": (
        r"opaci\w*", r"decreased translucency", r"increased density", r"\bair[- ]?space disease",
        r"infiltrat\w*", r"interstitial (?:marking|pattern|lung)\w*", r"reticular (?:pattern|marking)\w*",
        r"\breticulation", r"parenchymal scar\w*", r"peribronchial thickening", r"wall thickening", r"\bscar\w*",
        r"\bhaz(?:y|iness)\b", r"ground[- ]glass",  # ours: common phrasings of an opacity
    ),
    "Edema": (
        r"\bedema(?:tous)?\b", r"\bheart failure\b", r"\bchf\b", r"\bvascular congestion",
        r"\bpulmonary congestion", r"\bindistinctness\b", r"\bvascular prominence",
    ),
    "Consolidation": (r"consolidat\w*",),
    "Pneumonia": (r"\bpneumonias?\b", r"\binfections?\b", r"\binfectious\b"),
    "Atelectasis": (r"atelecta\w*", r"\bcollapsed?\b"),
    "Pneumothorax": (r"pneumothora(?:x|ces)\b", r"\bptx\b"),
    "Pleural Effusion": (r"\beffusions?\b", r"\bpleural fluid\b"),
    "Pleural Other": (
        r"\bpleural thickening", r"\bfibrosis\b", r"\bfibrothorax", r"\bpleural scar\w*",
        r"\bpleural[- ]parenchymal scar\w*", r"\bpleuro-?(?:parenchymal|pericardial) scar\w*",
    ),
    "Fracture": (r"\bfractur\w*",),
    "Support Devices": (
        r"\bpacer\b", r"\blines?\b", r"\bpicc\b", r"\btubes?\b", r"\bvalves?\b", r"\bcatheters?\b",
        r"\bpacemakers?\b", r"\bhardware\b", r"\barthroplast\w*", r"\bmarkers?\b", r"\bicd\b",
        r"\bdefib\w*", r"\bdevices?\b", r"\bdrains?\b", r"\bplates?\b", r"\bscrews?\b", r"\bcannula\w*",
        r"\bapparatus\b", r"\bcoils?\b", r"\bsupport\b", r"\bequipment\b", r"\bmediport\b",
        r"\bport-?a-?cath\b", r"\bleads?\b(?= (?:terminat|project|in|extend|overl))",  # ours
    ),
}

# Findings outside the 14 classes. A positive or uncertain mention of one of them means the report
# is not "No Finding" (the CheXpert labeler's `no_finding` mention list plays this role).
OTHER_FINDINGS: tuple[str, ...] = (
    r"\bemphysema\w*", r"\bblunt\w*", r"\bdensit(?:y|ies)\b", r"\belevat\w*", r"\beventration",
    r"\bscolio\w*", r"\bdegenera\w*", r"\bcalcifi\w*", r"\bhyperinflat\w*", r"\bhyperexpan\w*",
    r"\bbronchospasm", r"\basthma", r"\bhernia\w*", r"\bcopd\b", r"\bplaques?\b", r"\bosteophyt\w*",
    r"\baortic disease", r"\bbronchiolitis", r"\bairways? disease", r"\bthickening", r"\bcephalization",
    r"\baspiration", r"\bbullae?\b", r"\bbullous\b", r"\bcontusion", r"\batherosclero\w*", r"\bosteopenia",
    r"\bmetasta\w*", r"\bgranuloma\w*", r"\bpneumomediastinum", r"\bpneumoperitoneum", r"\bosteodystrophy",
    r"\bcuffing", r"\birregular lucency", r"\binflam\w*", r"\bfissures?\b", r"\bhypertension",
    r"\bprominen\w*", r"\bkypho\w*", r"\bbullets?\b", r"\breticula\w*", r"\bthoracentesis",
    r"\bbronchitis", r"\bvolume loss", r"\bdeformit\w*", r"\bhemorrhage", r"\bhematoma", r"\bradiopaque",
    r"\baerophagia", r"\barthropathy", r"\btracheostomy", r"\bbronchiectasis",
)

# Phrases that contain a mention but are not one; a mention overlapping one of them is dropped.
_POSITIONAL = r"(?:over|overlying|overlies|in|into|within|through|projecting over|projects over|at) the (?:superior |left |right |upper |lower )?"
UNMENTIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (_POSITIONAL + r"(?:mediastinum|cardiomediastinum|contour)",
                                   r"diaphragm\w* contours?"),
    "Cardiomegaly": (_POSITIONAL + r"(?:heart|cardiac (?:silhouette|shadow|contour))",
                     r"\bheart (?:failure|border|borders|rate|valve)", r"\b(?:right|left) heart\b(?! size)"),
    "Lung Lesion": (r"calcified nodul\w*", r"\bmassengale"),
    "Lung Opacity": (r"\bpleural[- ]?(?:parenchymal )?scar\w*", r"\bpleuro-?(?:parenchymal|pericardial) scar\w*"),
    "Pleural Effusion": (r"\bpericardial effusions?",),
    "Support Devices": (r"\b(?:kerley|septal|b)[- ]?(?:b )?lines?\b", r"\bpleural lines?\b", r"\bplate-?like\b",
                        r"\bline of\b", r"\bskin ?fold lines?\b"),  # ours: lines that are findings, not devices
}

# Mentions of a neutral structure (the heart, its size, the mediastinal contour) rather than of an
# abnormality: "stable"/"unchanged" makes them uncertain (the CheXpert labeler's "stable
# cardiomediastinal silhouette" rules), and "normal" makes them negative.
ANATOMIC = r"(?:cardiomediastinal|pericardial|mediastinal|mediastinum|cardiomediastinum|contour|configuration|silhouette|size|heart|shadow)"

# Edema mentions the CheXpert labeler always calls uncertain unless negated.
UNCERTAIN_EDEMA = r"(?:vascular congestion|pulmonary congestion|indistinctness|vascular prominence)"

# Edema mentions that also make Cardiomegaly uncertain when positive or uncertain.
HEART_FAILURE = r"(?:heart failure|chf)"

# --- Stage 2: classification cues -------------------------------------------------------------
# Each cue class comes in two directions: *before* the mention within its scope (the clause, see
# clinical.py) and *after* it in the mention's predicate ("effusion has resolved").

# Pre-negation uncertainty: checked first, so "no new X" and "cannot exclude X" are not negations.
PRE_UNCERTAIN_BEFORE = (
    (r"\b(?:cannot|can ?not|can't|could not|unable to) (?:be )?(?:entirely |completely |totally )?"
     r"(?:exclude[ds]?|rule out|ruled out)\b"),
    r"\b(?:no|without) (?:\w+ )?new\b", r"\bnot (?:entirely |completely )?(?:excluded|ruled out)\b",
    r"\bno evidence to rule out\b",
)
PRE_UNCERTAIN_AFTER = (
    r"\b(?:not|cannot|can ?not|can't|could not) (?:be )?(?:entirely |completely |totally )?(?:excluded|ruled out)\b",
)

# Negation.
NEGATION_BEFORE = (
    # "no", but not "no change in X" / "no longer" (X is then still there).
    r"\bno\b(?! (?:(?:significant|interval|appreciable|substantial|definite|other) )?(?:change|changes|longer)\b)",
    r"\bnot\b", r"\bwithout\b(?! (?:(?:significant|interval) )?change)", r"\bnegative for\b", r"\bfree of\b",
    r"\bclear(?:ing)? of\b", r"\brather than\b", r"\bhistory of\b", r"\bresolution of\b", r"\bresolved\b",
    r"\bdisappearance of\b", r"\bremoval of\b", r"\bdrainage of\b", r"\brule out\b", r"\bruled out\b",
    r"\bexclude[ds]?\b", r"\babsence of\b", r"\babsent\b", r"\bnor\b", r"\bneither\b", r"\bremoved\b",
    r"\b(?:normal|unremarkable) in (?:size and |appearance and )?$",  # "... is normal in size and contour"
)
NEGATION_AFTER = (
    r"\b(?:resolved|cleared|removed|withdrawn|absent)\b", r"\bresolution\b",
    (r"\bnot (?:seen|identified|present|demonstrated|evident|detected|noted|visualized|visible|enlarged|"
     r"dilated|widened|appreciably enlarged)\b"),
    r"\bno longer\b", r"\bnormal\b", r"\bunremarkable\b", r"\bwithin normal limits\b", r"\bnegative\b",
)
# "normal X" is a negation only when "normal" modifies X ("normal heart size"), not when it is the
# predicate of an earlier clause ("lungs are normal, heart is enlarged").
NORMAL = r"\b(?:normal|unremarkable)\b(?! limits)"
PREDICATIVE_BEFORE_NORMAL = (r"\b(?:is|are|was|were|be|been|appears?|appeared|remains?|seems?|looks?|"
                             r"otherwise|within|of|grossly|overall)\s+(?:\w+\s+)?$")
NORMAL_GAP_BLOCK = r"\b(?:enlarg\w*|widen\w*|increas\w*|large|abnormal\w*|mild\w*|moderate\w*|severe\w*|massive|is|are|was|were)\b"

# Post-negation uncertainty.
POST_UNCERTAIN_BEFORE = (
    (r"\b(?:possible|possibly|presumabl[ey]|presumed|probable|probably|questionabl[ey]|question of|"
     r"suspect\w*|suspicious|suspicion|concern(?:ing)? (?:for|of)|worrisome|may|might|could|would|maybe|"
     r"perhaps|differential|suggest\w*|favou?r\w*|consider\w*|secondary to|less likely|unlikely|"
     r"versus|vs|borderline|equivocal|indeterminate|(?:poorly|incompletely) (?:evaluated|assessed|visualized)|"
     r"obscur\w*|correlat\w* (?:clinically )?for|correlation for)\b"),
)
POST_UNCERTAIN_AFTER = (
    r"\?",
    # "opacity suspicious for pneumonia": the hedge is about what follows ("for"), not the opacity.
    (r"\b(?:possible|possibly|probable|probably|suspected|suspicious|questionabl[ey]|questioned|less likely|"
     r"unlikely|equivocal|indeterminate|borderline|a consideration|considered|obscured|not appreciated|"
     r"difficult to (?:assess|evaluate|exclude)|(?:poorly|incompletely) (?:seen|evaluated|assessed|visualized)|"
     r"not (?:well|clearly) (?:seen|visualized|evaluated|assessed|demonstrated))\b(?! (?:for|of)\b)"),
    r"\b(?:may|might|could|can|possibly) (?:also )?(?:be present|be seen|be noted|appear|exist)\b",
)
# Neutral structures described as unchanged (uncertain for the CheXpert labeler).
STABLE_BEFORE = r"\b(?:stable|unchanged|no (?:significant |interval )?change in)\b"
# Between "stable" and a later neutral structure it still reaches ("stable cardiomediastinal
# silhouette and heart size").
STABLE_GAP = r"(?:\s*(?:and|the|,|cardiac|hilar|heart|size|cardiomediastinal|mediastinal|silhouettes?|contours?|mediastinum)\s*)*"
STABLE_AFTER = (r"\b(?:stable|unchanged|not (?:significantly )?changed|no (?:significant |interval )?change|"
                r"similar (?:to|in appearance to|compared to|compared with)|grossly stable)\b")
