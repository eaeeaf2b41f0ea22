"""Where the scored numbers come from, for the report a researcher reads: the model and data behind
each predictions file (its PRED.settings.json), the DATA_DIR's manifest checksum, the prompt and
generation settings, the scoring options, pefomed's version and git commit, and the date.

Nothing here may fail the scoring: a missing or unreadable settings file, a DATA_DIR that moved
or a package that is not a git checkout each become a sentence in the report.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

from pefomed.records import settings_path

# Lists in PRED.settings.json that hold one entry per question; the report gives their size, the
# file keeps them (thousands of ids are no provenance a reader can take in).
PER_QUESTION = {"exemplars": "questions with exemplars", "ranked": "questions answered by ranking"}


def read_pred_settings(pred: str | Path) -> tuple[dict | None, str | None]:
    """(settings, None), or (None, why there are none) for a file infer did not write."""
    path = settings_path(pred)
    if not path.is_file():
        return None, f"no {path.name} beside {Path(pred).name} (not written by `pefomed infer`, or moved without it)"
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"{path}: unreadable ({type(err).__name__}: {str(err)[:120]})"
    if not isinstance(settings, dict):
        return None, f"{path}: not a JSON object"
    return settings, None


def data_dir_of(settings: dict | None) -> Path | None:
    inputs = (settings or {}).get("inputs")
    data = inputs.get("data") if isinstance(inputs, dict) else None
    return Path(data) if isinstance(data, str) and data else None


def data_info(data_dir: Path) -> dict[str, Any]:
    """The DATA_DIR as prepare recorded it: manifest sha256, format, source, creation date."""
    from pefomed.io import sha256_file

    manifest = data_dir / "manifest.json"
    if not manifest.is_file():
        return {"DATA_DIR": str(data_dir), "manifest": f"not found ({manifest}): moved or deleted since inference"}
    out: dict[str, Any] = {"DATA_DIR": str(data_dir), "manifest sha256": sha256_file(manifest)}
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {**out, "manifest": "unreadable JSON"}
    if isinstance(content, dict):
        for key in ("format", "source", "created_at", "tool_version"):
            if content.get(key) is not None:
                out[key.replace("_", " ")] = content[key]
    return out


def _summarize_prompt(prompt: dict) -> dict:
    out = {}
    for key, value in prompt.items():
        if key in PER_QUESTION and isinstance(value, (list, dict)):
            out[key] = f"{len(value)} {PER_QUESTION[key]} (the ids are in PRED.settings.json)"
        elif value is not None:
            out[key] = value
    return out


def file_provenance(pred: Path, side: str = "") -> dict[str, Any]:
    """What produced one predictions file, from the settings infer wrote beside it."""
    settings, why = read_pred_settings(pred)
    out: dict[str, Any] = {"file": str(pred)}
    if side:
        out["side"] = side.upper()
    if settings is None:
        out["settings"] = why
        return out
    out["settings file"] = str(settings_path(pred))
    if isinstance(settings.get("model"), dict):
        out["model"] = settings["model"]
    if settings.get("base_model") is not None:
        out["base model"] = settings["base_model"]
    if isinstance(settings.get("inputs"), dict):
        out["inputs"] = settings["inputs"]
    data = data_dir_of(settings)
    if data is not None:
        out["data"] = data_info(data)
    if isinstance(settings.get("prompt"), dict):
        out["prompt"] = _summarize_prompt(settings["prompt"])
    if isinstance(settings.get("generation"), dict):
        out["generation"] = settings["generation"]
    return out


def tool_info() -> dict[str, Any]:
    """pefomed's version, and the git commit of its source when it runs from a checkout."""
    import pefomed

    out: dict[str, Any] = {"version": pefomed.__version__}
    package = Path(pefomed.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10,
                                  check=False)
        except (OSError, subprocess.SubprocessError):  # no git, or a hung one
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # an installed copy inside some other repository (a venv in a project) must not report that
    # project's commit: the checkout must be the one holding this very package
    if top and (Path(top) / "pefomed" / "__init__.py").resolve() == package / "__init__.py":
        commit = git("rev-parse", "HEAD")
        if commit:
            dirty = git("status", "--porcelain", "--untracked-files=no")
            out["git commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    if "git commit" not in out:
        out["git commit"] = "not available (not run from a git checkout)"
    return out


def options_table(opts) -> dict[str, Any]:
    """The scoring options as given (ScoreOptions), flag -> value; the judge key's variable name
    only, never a value."""
    out = {}
    for f in fields(opts):
        if f.metadata.get("cli"):
            out[type(opts).flag(f.name)] = getattr(opts, f.name)
    return out


def provenance(paths: list[Path], compare_paths: list[Path], opts) -> dict[str, Any]:
    side = "a" if compare_paths else ""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "pefomed": tool_info(),
        "files": [file_provenance(p, side) for p in paths] + [file_provenance(p, "b") for p in compare_paths],
        "options": options_table(opts),
    }
