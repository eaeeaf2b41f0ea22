"""Running a study's units: one after another, side by side on several GPUs, or on a cluster.

Each step is a `pefomed` subprocess (`python -m pefomed.cli.app ...`) run in the unit's folder, so
every cell starts from a clean process (DeepSpeed's process group, CUDA memory, global state) and
what runs is exactly what `--dry-run` prints. Output goes to the unit's log.txt.

Resume: a unit whose done.json exists is never redone (done.json is written last and atomically).
Inside an unfinished unit each step whose output exists is skipped; an interrupted training
continues with `pefomed train --resume` from its last checkpoint and an interrupted `pefomed
infer` resumes from its .partial file, so a killed study rerun with the same command picks up
where it stopped.
"""

from __future__ import annotations

import os
import queue
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pefomed.errors import UserError
from pefomed.options.train import TrainCommand
from pefomed.io import read_json, write_json
from pefomed.study.plan import CELLS_DIR, DONE, Unit


class StepFailed(Exception):
    pass


def command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "pefomed.cli.app", *argv]


def shown(unit: Unit, argv: list[str], study_dir: Path) -> str:
    """A command as a person would type it."""
    return f"(cd {shlex.quote(str(study_dir / unit.folder))} && pefomed {shlex.join(argv)})"


def status(unit: Unit, study_dir: Path) -> str:
    folder = study_dir / unit.folder
    if (folder / DONE).is_file():
        return "done"
    if unit.pending:
        return "waits for its prompt selection"
    if unit.after and not (study_dir / CELLS_DIR / unit.after / DONE).is_file():
        return f"waits for cell {unit.after}"
    if folder.is_dir() and any((folder / s.output).exists() for s in unit.steps):
        return "partial"
    return "to do"


def _step_argv(unit: Unit, step, folder: Path) -> list[str] | None:
    """The command that finishes `step` now, or None when its output already exists."""
    if (folder / step.output).exists():
        return None
    if step.name == "train" and (folder / "run" / "checkpoints" / "latest").exists():
        return ["train", *TrainCommand(resume=Path("run")).to_argv()]
    return step.argv


def _run(argv: list[str], folder: Path, log: Path, env: dict[str, str], unit: Unit) -> None:
    with open(log, "a", encoding="utf-8") as handle:
        if "CUDA_VISIBLE_DEVICES" in env:
            handle.write(f"# CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}\n")
        handle.write(f"$ pefomed {shlex.join(argv)}\n")
        handle.flush()
        code = subprocess.run(command(argv), cwd=folder, stdout=handle, stderr=subprocess.STDOUT, env=env,
                              check=False).returncode
        handle.write(f"[exit {code}]\n")
    if code != 0:
        raise StepFailed(f"{unit.kind} {unit.id}: `pefomed {argv[0]}` failed with exit code {code}; see {log}")


def _metric_value(metrics: dict, metric: str, where: Path) -> float:
    total = 0.0
    for part in metric.split("+"):
        section, _, name = part.partition("/")
        entry = (metrics.get(section) or {}).get(name)
        if entry is None or entry.get("value") is None:
            raise UserError(f"{where}: no value for selection metric {part!r}"
                            + (f" ({entry['unavailable']})" if entry and entry.get("unavailable") else ""))
        total += float(entry["value"])
    return total


def choose(unit: Unit, folder: Path) -> dict:
    """Every candidate's validation score and the best (ties: the first in the pool)."""
    rows, best = [], None
    for i, candidate in enumerate(unit.candidates):
        value = _metric_value(read_json(folder / f"c{i}" / "metrics.json"), unit.metric, folder / f"c{i}")
        rows.append({"index": i, "name": candidate["name"], "candidate": candidate, "value": value,
                     "predictions": f"c{i}/pred.jsonl"})
        if best is None or value > best["value"]:  # strictly better: a tie keeps the earlier candidate
            best = rows[-1]
    return {"selection": unit.id, "model": unit.model, "data": unit.data, "adaptation": unit.adaptation,
            "seed": unit.seed, "split": unit.definition["split"], "limit": unit.definition["limit"],
            "limit_seed": unit.definition["limit_seed"], "metric": unit.metric, "candidates": rows,
            "chosen": {k: best[k] for k in ("index", "name", "candidate", "value")}}


def run_unit(unit: Unit | dict, study_dir: str | Path, gpu: str | None = None) -> dict:
    """Finish one unit (a module-level function of plain arguments, so submitit can pickle it)."""
    unit = Unit.from_dict(unit) if isinstance(unit, dict) else unit
    study_dir = Path(study_dir)
    folder = study_dir / unit.folder
    done = folder / DONE
    argvs = [s.argv for s in unit.steps]
    if done.is_file():
        record = read_json(done)
        if unit.kind == "cell" and record.get("steps", argvs)[-1] != argvs[-1]:
            # the study's score settings changed: score again, nothing else (the id does not cover them)
            env = dict(os.environ)
            _run(unit.steps[-1].argv, folder, folder / "log.txt", env, unit)
            write_json(done, {**record, "steps": argvs})
            return {"id": unit.id, "status": "rescored"}
        return {"id": unit.id, "status": "skipped"}
    if unit.pending:
        raise RuntimeError(f"cell {unit.id} was started before its prompt selection finished")
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "unit.json", unit.to_dict())
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    for step in unit.steps:
        argv = _step_argv(unit, step, folder)
        if argv is not None:
            _run(argv, folder, folder / "log.txt", env, unit)
    if unit.kind == "selection":
        write_json(folder / "selection.json", choose(unit, folder))
    write_json(done, {"id": unit.id, "kind": unit.kind, "steps": argvs})
    return {"id": unit.id, "status": "ran"}


def run_units(units: list[Unit], study_dir: Path, *, gpus: list[str] | None = None, executor=None,
              on_result=None) -> list[dict]:
    """Run units (skipping finished ones); all are attempted, then failures are one UserError."""
    results, failures = [], []

    def record(result=None, error=None, unit=None):
        if error is not None:
            failures.append(str(error) if isinstance(error, StepFailed) else f"{unit.kind} {unit.id}: {error}")
            return
        results.append(result)
        if on_result is not None:
            on_result(result)

    if executor is not None:
        # submitit: one job per unit, on whatever the executor targets (SLURM, or a local process)
        jobs = [(u, executor.submit(run_unit, u.to_dict(), str(study_dir))) for u in units]
        for unit, job in jobs:
            try:
                record(job.result())
            except Exception as err:  # noqa: BLE001 - a failed job is reported with the others
                record(error=_job_error(err), unit=unit)
    elif gpus and len(gpus) > 1:
        free: queue.Queue = queue.Queue()
        for gpu in gpus:
            free.put(gpu)

        def on_a_gpu(unit: Unit) -> dict:
            gpu = free.get()
            try:
                return run_unit(unit, study_dir, gpu)
            finally:
                free.put(gpu)

        with ThreadPoolExecutor(len(gpus)) as pool:
            futures = [(u, pool.submit(on_a_gpu, u)) for u in units]
            for unit, future in futures:
                try:
                    record(future.result())
                except (StepFailed, UserError) as err:
                    record(error=err, unit=unit)
    else:
        gpu = gpus[0] if gpus else None
        for unit in units:
            try:
                record(run_unit(unit, study_dir, gpu))
            except (StepFailed, UserError) as err:
                record(error=err, unit=unit)
    if failures:
        raise UserError(f"{len(failures)} of {len(units)} units failed (finished ones are kept; rerun the same "
                        "command to retry):\n  " + "\n  ".join(failures))
    return results


def _job_error(err: Exception) -> Exception:
    """submitit wraps the job's exception in its own; keep our message when it is one of ours."""
    text = str(err)
    for marker in ("StepFailed: ", "UserError: "):
        if marker in text:
            return StepFailed(text.rsplit(marker, 1)[1].strip().splitlines()[0])
    return err
