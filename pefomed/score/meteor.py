"""METEOR 1.5 through the jar pycocoevalcap ships, exactly as pycocoevalcap drives it.

One JVM per scoring run (starting it and loading the paraphrase table dominates the cost).
When Java or pycocoevalcap is missing, METEOR is reported unavailable with the reason; we never
substitute another METEOR implementation (NLTK's, for instance, gives different numbers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class MeteorResult:
    available: bool
    corpus: float | None = None
    segments: list[float] = field(default_factory=list)
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


def meteor_scores(hyps: list[str], refs: list[list[str]]) -> MeteorResult:
    """Corpus and per-segment METEOR of tokenized captions (newlines collapsed first)."""
    reason = unavailable_reason()
    if reason:
        return MeteorResult(False, reason=reason)
    folder = _jar_dir()
    cmd = ["java", "-jar", "-Xmx2G", "meteor-1.5.jar", "-", "-", "-stdio", "-l", "en", "-norm"]
    try:
        proc = subprocess.Popen(cmd, cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C.UTF-8"})
    except OSError as err:
        return MeteorResult(False, reason=f"could not start Java: {err}")
    try:
        stats = []
        for hyp, rs in zip(hyps, refs):
            line = " ||| ".join(["SCORE", " ||| ".join(_clean(r) for r in rs), _clean(hyp)])
            proc.stdin.write((line + "\n").encode("utf-8"))
            proc.stdin.flush()
            stats.append(proc.stdout.readline().decode("utf-8").strip())
        proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode("utf-8"))
        proc.stdin.flush()
        segments = [float(proc.stdout.readline().strip()) for _ in stats]
        corpus = float(proc.stdout.readline().strip())
    except (BrokenPipeError, ValueError) as err:
        return MeteorResult(False, reason=f"the METEOR jar failed: {err}")
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        proc.kill()
        proc.wait()
    return MeteorResult(True, corpus=corpus, segments=segments)
