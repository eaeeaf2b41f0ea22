"""METEOR 1.5 through the jar pycocoevalcap ships, exactly as pycocoevalcap drives it, plus the
jar's corpus-score arithmetic in numpy so the corpus score can be bootstrapped.

One JVM per scored file (starting it and loading the paraphrase table dominates the cost), started
before the other metrics are computed so that both run at once (MeteorJob).
When Java or pycocoevalcap is missing, METEOR is reported unavailable with the reason; we never
substitute another METEOR implementation (NLTK's, for instance, gives different numbers).

Why the numpy part: the number pycocoevalcap reports is the jar's *corpus* score, which is not
the mean of the segment scores. The jar computes it from the sum of the per-segment sufficient
statistics (the line `SCORE` answers with), so the corpus score is a function of summed per-sample
statistics, like corpus BLEU, and a bootstrap resample recomputes it from resampled sums. The
formula below is METEOR 1.5's MeteorScorer.computeMetrics and MeteorStats.addStats, with the
English "rank" task parameters the jar uses for `-l en` (checked against the jar's own corpus
score in tests/score/test_meteor_interval.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The jar's stats line: test length, reference length, test / reference function words, then per
# module (exact, stem, synonym, paraphrase) test content, reference content, test function,
# reference function matches, then chunks, test word matches, reference word matches.
N_STATS = 23
_TLEN, _RLEN, _TFUN, _RFUN = 0, 1, 2, 3
_CHUNKS, _TWORDS, _RWORDS = 20, 21, 22
# METEOR 1.5 English, task "rank" (the default for a supported language): alpha, beta, gamma,
# delta and the exact / stem / synonym / paraphrase module weights.
ALPHA, BETA, GAMMA, DELTA = 0.85, 0.20, 0.60, 0.75
MODULE_WEIGHTS = (1.0, 0.6, 0.8, 0.6)


@dataclass
class MeteorResult:
    available: bool
    corpus: float | None = None
    segments: list[float] = field(default_factory=list)
    stats: np.ndarray | None = None  # (n, N_STATS) the jar's per-segment statistics, as parsed
    reason: str | None = None


def _jar_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "meteor"
    return folder if (folder / "meteor-1.5.jar").is_file() else None


def unavailable_reason() -> str | None:
    if _jar_dir() is None:
        return "pycocoevalcap (which ships meteor-1.5.jar) is not installed: pip install pycocoevalcap"
    if shutil.which("java") is None:
        return "Java is not installed (METEOR 1.5 is a Java program)"
    return None


def _clean(text: str) -> str:
    # The jar reads one line per request and uses '|||' as a field separator.
    return " ".join(text.replace("|||", "").split())


def _totals(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unweighted test / reference matches over all modules (MeteorStats' totals)."""
    modules = stats[..., 4:20].reshape(stats.shape[:-1] + (4, 4))
    return modules[..., 0].sum(-1) + modules[..., 2].sum(-1), modules[..., 1].sum(-1) + modules[..., 3].sum(-1)


def _perfect(stats: np.ndarray) -> np.ndarray:
    """The jar's 'test = reference' case: everything matched in one chunk (no fragmentation)."""
    test_matches, ref_matches = _totals(stats)
    return (test_matches == stats[..., _TLEN]) & (ref_matches == stats[..., _RLEN]) & (stats[..., _CHUNKS] == 1)


def aggregable(stats: np.ndarray) -> np.ndarray:
    """Per-segment statistics whose column sums are what the jar's addStats accumulates: it skips
    the chunk count of a perfectly matched segment, so that column is zeroed for those rows."""
    out = np.array(stats, dtype=np.float64, copy=True)
    if out.size:
        out[_perfect(out), _CHUNKS] = 0.0
    return out


def score_from_sums(sums: np.ndarray) -> np.ndarray:
    """METEOR score from summed statistics (..., N_STATS) -> (...): computeMetrics of METEOR 1.5."""
    s = np.asarray(sums, dtype=np.float64)
    weights = np.asarray(MODULE_WEIGHTS)
    modules = s[..., 4:20].reshape(s.shape[:-1] + (4, 4))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        test_len = DELTA * (s[..., _TLEN] - s[..., _TFUN]) + (1 - DELTA) * s[..., _TFUN]
        ref_len = DELTA * (s[..., _RLEN] - s[..., _RFUN]) + (1 - DELTA) * s[..., _RFUN]
        test_matched = (modules[..., 0] @ weights) * DELTA + (modules[..., 2] @ weights) * (1 - DELTA)
        ref_matched = (modules[..., 1] @ weights) * DELTA + (modules[..., 3] @ weights) * (1 - DELTA)
        precision = test_matched / test_len
        recall = ref_matched / ref_len
        fmean = 1.0 / ((1 - ALPHA) / precision + ALPHA / recall)
        frag = s[..., _CHUNKS] / ((s[..., _TWORDS] + s[..., _RWORDS]) / 2)
        frag = np.where(_perfect(s), 0.0, frag)
        score = fmean * (1 - GAMMA * np.power(frag, BETA))
    # Java: NaN (0/0) -> 0, and the score is clipped at 0.
    return np.where(np.isnan(score), 0.0, np.maximum(score, 0.0))


class MeteorJob:
    """One METEOR 1.5 JVM scoring one file's segments in the background.

    Starting the JVM and loading its paraphrase table costs several seconds and each segment is
    then scored in Java, so `pefomed score` starts the job first (`MeteorJob()`), hands it the
    tokenized captions as soon as they exist (`submit`), computes BLEU, ROUGE-L, CIDEr-D and the
    clinical labels meanwhile, and only then waits (`result`). Lines are written by one thread and
    read by another, so neither side waits for the other's round trip and the pipes never fill.
    The protocol is pycocoevalcap's: one SCORE line per segment, then one EVAL line with every
    segment's statistics, which answers each segment's score and the corpus score."""

    def __init__(self):
        self._reason = unavailable_reason()
        self._proc = None
        self._thread = None
        self._result: MeteorResult | None = None
        self._scored = 0  # segments answered so far (read by result's progress bar)
        self._total = 0
        if self._reason:
            return
        # pycocoevalcap's command plus one JVM option that changes no number (the jar's output is
        # the same line for line; Java's floating point is strict): the serial collector, so no GC
        # threads compete with the Python work that runs meanwhile (and half the resident memory:
        # about 0.6 instead of 1.3 GB). Limiting the JVM to the C1 compiler saved CPU on a busy
        # machine but cost wall time on an idle one (3,858 MIMIC-sized segments alone: 9.4 s with
        # C1 only, 7.5-8.0 s without, 2 idle cores), so the default compilers stay.
        cmd = ["java", "-XX:+UseSerialGC", "-jar", "-Xmx2G", "meteor-1.5.jar", "-", "-",
               "-stdio", "-l", "en", "-norm"]
        try:
            self._proc = subprocess.Popen(cmd, cwd=_jar_dir(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C.UTF-8"})
        except OSError as err:
            self._reason = f"could not start Java: {err}"

    def submit(self, hyps: list[str], refs: list[list[str]]) -> "MeteorJob":
        import threading

        if self._proc is None:
            self._result = MeteorResult(False, reason=self._reason)
            return self
        lines = [" ||| ".join(["SCORE", " ||| ".join(_clean(r) for r in rs), _clean(hyp)]) + "\n"
                 for hyp, rs in zip(hyps, refs)]
        self._total = len(lines)
        self._thread = threading.Thread(target=self._run, args=(lines,), name="meteor", daemon=True)
        self._thread.start()
        return self

    def _feed(self, lines: list[str], failure: list) -> None:
        try:
            self._proc.stdin.write("".join(lines).encode("utf-8"))
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as err:  # the JVM died: the reader sees its output end
            failure.append(err)

    def _run(self, lines: list[str]) -> None:
        import threading

        proc, failure = self._proc, []
        try:
            feeder = threading.Thread(target=self._feed, args=(lines, failure), daemon=True)
            feeder.start()
            stats = []
            for _ in lines:
                line = proc.stdout.readline()
                if not line:
                    raise ValueError(f"the jar stopped after {len(stats)} of {len(lines)} segments"
                                     + (f" ({failure[0]})" if failure else ""))
                stats.append(line.decode("utf-8").strip())
                self._scored = len(stats)
            feeder.join()
            proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode("utf-8"))
            proc.stdin.flush()
            segments = [float(proc.stdout.readline().strip()) for _ in stats]
            corpus = float(proc.stdout.readline().strip())
            table = np.array([[float(x) for x in line.split()] for line in stats], dtype=np.float64) \
                if stats else np.zeros((0, N_STATS))
            if table.shape[1:] != (N_STATS,):
                raise ValueError(f"expected {N_STATS} statistics per segment, got {table.shape[1:]}")
            self._result = MeteorResult(True, corpus=corpus, segments=segments, stats=table)
        except (BrokenPipeError, OSError, ValueError) as err:
            self._result = MeteorResult(False, reason=f"the METEOR jar failed: {err}")
        finally:
            self.close()

    def result(self, progress: bool = False) -> MeteorResult:
        """Wait for the jar; `progress`: a bar of the segments it has scored meanwhile."""
        if self._thread is not None:
            if progress and self._thread.is_alive():
                from pefomed.console import progress_bar

                with progress_bar() as bar:
                    task = bar.add_task("METEOR 1.5 (Java)", total=self._total, completed=self._scored, status="")
                    while self._thread.is_alive():
                        self._thread.join(timeout=0.5)
                        bar.update(task, completed=self._scored)
            self._thread.join()
        if self._result is None:  # never submitted
            self.close()
            return MeteorResult(False, reason=self._reason or "nothing was submitted")
        return self._result

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        proc.kill()
        proc.wait()


def meteor_scores(hyps: list[str], refs: list[list[str]]) -> MeteorResult:
    """Corpus and per-segment METEOR of tokenized captions (newlines collapsed first), and each
    segment's statistics line: one JVM, started, fed and read to the end."""
    return MeteorJob().submit(hyps, refs).result()
