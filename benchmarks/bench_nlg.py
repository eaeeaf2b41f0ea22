"""Report scoring speed, pefomed vs pycocoevalcap, measured side by side in one run.

Default: BLEU-1..4, ROUGE-L and CIDEr-D on 10,000 report pairs. Both sides score the same
already-tokenized captions, so the ratio is the metric computation only (tokenization is timed
separately). Usage: python benchmarks/bench_nlg.py [--n 10000]

--end-to-end: the full `pefomed score PRED.jsonl --out METRICS.json` (BLEU, METEOR, ROUGE-L, CIDEr-D
with every bootstrap interval, the 14 clinical labels with theirs, the report files) against a
script that does what pycocoevalcap users run: its PTBTokenizer (the CoreNLP jar) and its four
scorers Bleu(4), Meteor, Rouge, Cider on the same reports, without intervals. Each side runs as its
own process (interpreter start and imports included) on the same generated PRED.jsonl, alternating,
--repeat times; the medians of wall and CPU time (the process and its children: the JVMs included)
are printed with their ratios. Usage: python benchmarks/bench_nlg.py --end-to-end [--n 3858]
[--repeat 3] [--profile FILE.prof]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "score"))


def main() -> None:
    from corpus_gen import make_corpus
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from pefomed.metrics.nlg import NlgStats, tokenize_pairs
    from pefomed.score.stats import Bootstrap

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=None, help="reports (10,000; 3,858 with --end-to-end: "
                                                             "the MIMIC-CXR test split's size)")
    parser.add_argument("--end-to-end", action="store_true", help="full `pefomed score` vs pycocoevalcap's four "
                                                                  "metrics, each in its own process")
    parser.add_argument("--repeat", type=int, default=1, help="--end-to-end: runs of each side (medians)")
    parser.add_argument("--profile", type=Path, default=None, help="--end-to-end: also write a cProfile of one "
                                                                    "`pefomed score` run to this file")
    args = parser.parse_args()
    if args.end_to_end:
        return end_to_end(args.n or 3858, args.repeat, args.profile)
    args.n = args.n or 10_000
    hyps, refs = make_corpus(args.n, seed=1)
    t0 = time.perf_counter()
    th, tr = tokenize_pairs(hyps, refs, "ptb")
    t_tok = time.perf_counter() - t0
    gts = {i: r for i, r in enumerate(tr)}
    res = {i: [h] for i, h in enumerate(th)}

    t0 = time.perf_counter()
    coco = {"BLEU-4": Bleu(4).compute_score(gts, res, verbose=0)[0][3],
            "ROUGE-L": Rouge().compute_score(gts, res)[0], "CIDEr-D": Cider().compute_score(gts, res)[0]}
    t_coco = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = NlgStats(th, tr).corpus()
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    stats = NlgStats(th, tr)
    boot = Bootstrap.make(args.n, 1000, seed=0)
    boot.sums(stats.bleu)
    t_boot = time.perf_counter() - t0

    for key, value in coco.items():
        print(f"{key:8s} pycocoevalcap {value:.6f}  pefomed {ours[key]:.6f}")
    print(f"pairs: {args.n}; python PTB tokenization: {t_tok:.2f} s")
    print(f"pycocoevalcap BLEU+ROUGE-L+CIDEr: {t_coco:.2f} s")
    print(f"pefomed       BLEU+ROUGE-L+CIDEr: {t_ours:.2f} s")
    print(f"ratio pefomed / pycocoevalcap: {t_ours / t_coco:.3f}  ({t_coco / t_ours:.1f}x faster)")
    print(f"pefomed stats + 1,000 corpus-BLEU bootstrap resamples: {t_boot:.2f} s")


# ------------------------------------------------------------------------------ end to end

# pycocoevalcap as its users call it: PTBTokenizer on {id: [{"caption": ...}]}, then the four scorers
_COCO_SCRIPT = """
import json, sys
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.cider.cider import Cider

rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
gts = {i: [{"caption": r["reference"]}] for i, r in enumerate(rows)}
res = {i: [{"caption": r["prediction"]}] for i, r in enumerate(rows)}
tok = PTBTokenizer()
gts, res = tok.tokenize(gts), tok.tokenize(res)
out = {}
for name, scorer in (("BLEU", Bleu(4)), ("METEOR", Meteor()), ("ROUGE-L", Rouge()), ("CIDEr", Cider())):
    score, _ = scorer.compute_score(gts, res)
    out[name] = score
json.dump(out, open(sys.argv[2], "w"))
"""


def report_corpus(n: int, seed: int = 0) -> list[dict]:
    """n generated (prediction, reference) report pairs in MIMIC-CXR style: sentences of the
    clinical labeler's hand-labelled set, varied in side, size and date so that most sentences of
    the corpus are distinct (as in real reports), 2-6 sentences each."""
    data = Path(__file__).resolve().parents[1] / "tests" / "score" / "data" / "clinical_sentences.jsonl"
    pool = [json.loads(line)["text"] for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)

    def sentence() -> str:
        s = rng.choice(pool)
        s = s.replace("right", rng.choice(["right", "left", "bilateral"]))
        s = s.replace("small", rng.choice(["small", "moderate", "large", "tiny"]))
        if rng.random() < 0.3:
            s = s.rstrip(".") + f", unchanged since {rng.randint(1, 12)}/{rng.randint(1, 28)}/20{rng.randint(10, 22)}."
        return s

    def report() -> str:
        return " ".join(sentence() for _ in range(rng.randint(2, 6)))

    return [{"id": f"r{i}", "task": "report", "images": [f"study{i}/view1.jpg"], "question": "Describe the image.",
             "prediction": report(), "reference": report()} for i in range(n)]


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds (the process and every child it waited for, JVMs included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def end_to_end(n: int, repeat: int, profile: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-nlg-") as tmp:
        work = Path(tmp)
        pred = work / "pred.jsonl"
        pred.write_text("".join(json.dumps(row) + "\n" for row in report_corpus(n)), encoding="utf-8")
        (work / "coco.py").write_text(_COCO_SCRIPT, encoding="utf-8")
        ours_cmd = [sys.executable, "-m", "pefomed.cli.app", "score", str(pred), "--out", str(work / "metrics.json")]
        coco_cmd = [sys.executable, str(work / "coco.py"), str(pred), str(work / "coco.json")]
        ours, coco = [], []
        for run in range(repeat):  # alternating, so that a change of the machine's load hits both sides
            load = os.getloadavg()[0]
            ours.append(_timed(ours_cmd, work))
            coco.append(_timed(coco_cmd, work))
            print(f"run {run + 1}: load average {load:.1f} before; pefomed wall {ours[-1][0]:.2f} s CPU {ours[-1][1]:.2f} s; "
                  f"pycocoevalcap wall {coco[-1][0]:.2f} s CPU {coco[-1][1]:.2f} s; ratio wall "
                  f"{ours[-1][0] / coco[-1][0]:.3f} CPU {ours[-1][1] / coco[-1][1]:.3f}", flush=True)
        metrics = json.loads((work / "metrics.json").read_text())
        theirs = json.loads((work / "coco.json").read_text())
        pairs = (("BLEU-4", theirs["BLEU"][3]), ("METEOR", theirs["METEOR"]), ("ROUGE-L", theirs["ROUGE-L"]),
                 ("CIDEr-D", theirs["CIDEr"]))
        for name, value in pairs:
            print(f"{name:8s} pycocoevalcap {value:.6f}  pefomed {metrics['report'][name]['value']:.6f} "
                  f"[{metrics['report'][name]['ci_low']:.4f}, {metrics['report'][name]['ci_high']:.4f}]")
        boot = metrics["settings"]["bootstrap"]["resamples"]
        n_metrics = sum(len(metrics.get(section, {})) for section in ("report", "clinical"))
        wall_o, cpu_o = statistics.median(w for w, _ in ours), statistics.median(c for _, c in ours)
        wall_c, cpu_c = statistics.median(w for w, _ in coco), statistics.median(c for _, c in coco)
        print(f"reports: {n}; runs of each side: {repeat}; CPUs: {os.cpu_count()}; load average "
              f"{os.getloadavg()[0]:.1f}")
        print(f"pefomed score (report + clinical: {n_metrics} metrics, {boot} bootstrap resamples each, METEOR, "
              f"report files): wall {wall_o:.2f} s, CPU {cpu_o:.2f} s")
        print(f"pycocoevalcap (PTBTokenizer jar, Bleu/Meteor/Rouge/Cider, no intervals):  wall {wall_c:.2f} s, "
              f"CPU {cpu_c:.2f} s")
        print(f"ratio pefomed / pycocoevalcap: wall {wall_o / wall_c:.3f}, CPU {cpu_o / cpu_c:.3f}")
        if profile is not None:
            subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile.resolve()), *ours_cmd[1:]],
                           cwd=work, capture_output=True, check=True)
            print(f"profile of one pefomed score run: {profile} (python -m pstats {profile})")


if __name__ == "__main__":
    main()
