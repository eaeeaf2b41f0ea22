"""Which metrics a set of scored rows gets, and their values with intervals.

A *spec* (pefomed.score.stats.MetricSpec) is one metric of one section: its per-row statistics
and how to turn them into a value. `collect_specs` asks every scorer the options switch on;
`start_specs` does the same but leaves METEOR's JVM scoring in the background; `evaluate_specs`
turns specs into METRICS.json's {section: {metric: entry}} with their intervals.
`metric_name_problem` checks a "section/metric" name against what the scorers write.
"""

from __future__ import annotations

from typing import Any

from pefomed.options.score import ScoreOptions


def metric_name_problem(metric: str) -> str | None:
    """Why `metric` ("section/name", as keyed in METRICS.json) is never a metric `pefomed score`
    writes, or None. The names come from the scorers' own tables (VQA subsets by question_type,
    organ or modality take any label: they depend on the data)."""
    from pefomed.metrics.nlg import N
    from pefomed.score.clinical import OBSERVATIONS
    from pefomed.score.vqa_section import GROUP_KEYS
    from pefomed.score.report_models import AVERAGES as REPORT_MODEL_AVERAGES
    from pefomed.score.report_models import CHEXBERT_CLASSES

    section, _, name = metric.partition("/")
    fixed = {
        "vqa": {"overall", "closed", "open", "closed_yesno_first_word"},
        "report": {*(f"BLEU-{k}" for k in range(1, N + 1)), "METEOR", "ROUGE-L", "CIDEr-D"},
        "clinical": {*(f"{m}_{avg}/{n}" for m in ("precision", "recall", "f1") for avg in ("micro", "macro")
                       for n in ("14", "5")),
                     *(f"{m}/{obs}" for m in ("precision", "recall", "f1") for obs in OBSERVATIONS)},
        "semantic": {"cosine"},
        "chexbert": {*(f"{m}_{avg}/{n}" for m in ("precision", "recall", "f1") for avg in REPORT_MODEL_AVERAGES
                       for n in ("14", "5")),
                     *(f"{m}/{c}" for m in ("precision", "recall", "f1") for c in CHEXBERT_CLASSES), "accuracy/5"},
        "radgraph": {"f1_simple", "f1_partial", "f1_complete"},
        "bertscore": {"f1"},
        "ratescore": {"ratescore"},
        "green": {"green"},
        "judge": {"vqa_correct", "report_likert", "report_likert/4"},
    }
    if section not in fixed:
        return f"no section {section!r} (sections: {', '.join(fixed)})"
    if name in fixed[section]:
        return None
    if section == "vqa" and name.partition("/")[0] in GROUP_KEYS and name.partition("/")[2]:
        return None
    examples = sorted(fixed[section])[:6]
    return (f"{section!r} has no metric {name!r} (e.g. {', '.join(f'{section}/{e}' for e in examples)}"
            + (f"; or vqa/{{{'|'.join(GROUP_KEYS)}}}/LABEL" if section == "vqa" else "") + ")")


def collect_specs(rows: list, opts: ScoreOptions, groups: list | None = None) -> tuple[list, dict[str, Any]]:
    """All metric specs for the rows, and settings/notes the sections report. `groups`: rows whose
    task/answer_type/meta define the VQA subsets (shared by the files of a comparison)."""
    from pefomed.score.nlg import in_report_order

    specs, finish, notes = start_specs(rows, opts, groups)
    return in_report_order(specs + finish()), notes



def start_specs(rows: list, opts: ScoreOptions, groups: list | None = None):
    """collect_specs in two halves: every spec but METEOR's, and a function that waits for the
    METEOR JVM scoring in the background (so that the caller can bootstrap the rest meanwhile)."""
    specs: list = []
    notes: dict[str, Any] = {}
    finish = list  # no METEOR: nothing to wait for
    from pefomed.score.vqa_section import vqa_metrics

    specs += vqa_metrics(rows, opts.vqa_convention, groups=groups)
    if any(r.task == "report" for r in rows):
        from pefomed.score.nlg import start_report_metrics

        # METEOR's JVM scores in the background while the other report metrics are computed
        report_specs, finish = start_report_metrics(rows, tokenizer=opts.tokenizer, meteor=opts.meteor, notes=notes,
                                                   progress=opts.progress)
        specs += report_specs
        if opts.clinical:
            from pefomed.score.clinical import clinical_metrics

            specs += clinical_metrics(rows, uncertain=opts.uncertain, progress=opts.progress)
        if opts.semantic:
            from pefomed.score.semantic import semantic_metrics

            specs += semantic_metrics(rows, notes=notes)
        if opts.chexbert or opts.radgraph or opts.bertscore:
            from pefomed.score import report_models as rm

            online, folder = opts.report_models_online, opts.report_models_dir
            if opts.chexbert:
                specs += rm.chexbert_metrics(rows, folder, online, notes=notes)
            if opts.radgraph:
                specs += rm.radgraph_metrics(rows, opts.radgraph, folder, online, notes=notes)
            if opts.bertscore:
                specs += rm.bertscore_metrics(rows, opts.bertscore, opts.bertscore_layers, online, notes=notes)
        if opts.ratescore or opts.green:
            from pefomed.score import ratescore_green as rg

            if opts.ratescore:
                specs += rg.ratescore_metrics(rows, opts.ratescore_ner_model, opts.ratescore_embedding_model,
                                              opts.report_models_online, notes=notes)
            if opts.green:
                specs += rg.green_metrics(rows, opts.green, opts.green_batch_size, opts.green_max_length,
                                          opts.report_models_online, notes=notes)
    if opts.judge_url or opts.judge_local:
        from pefomed.score.judge import judge_metrics

        specs += judge_metrics(rows, opts, notes=notes)
    return specs, finish, notes


def evaluate_specs(specs: list, boot, opts: ScoreOptions, clusters=None, done: dict | None = None) -> dict[str, dict]:
    """{section: {metric: entry}} in the order of `specs`; `done`: entries already evaluated."""
    from pefomed.console import track

    done = dict(done or {})
    todo = [spec for spec in specs if (spec.section, spec.name) not in done]
    for spec in (track(todo, "metrics + intervals") if opts.progress and todo else todo):
        done[(spec.section, spec.name)] = spec.evaluate(boot, opts.alpha, proportion=opts.proportion_interval,
                                                        clusters=clusters)
    out: dict[str, dict] = {}
    for spec in specs:
        out.setdefault(spec.section, {})[spec.name] = done[(spec.section, spec.name)]
    return out
