"""Run a study end to end: plan, prompt selections, cells, report."""

from __future__ import annotations

from pathlib import Path

from pefomed.console import console, stdout_console
from pefomed.study.plan import plan_study
from pefomed.study.runner import run_units, shown, status
from pefomed.study.spec import load_study


def print_plan(selections, cells, study_dir: Path) -> None:
    def show(unit):
        stdout_console.print(f"[bold]{unit.kind} {unit.id}[/]  ({status(unit, study_dir)})", highlight=False)
        for step in unit.steps:
            stdout_console.print("  " + shown(unit, step.argv, study_dir), markup=False, highlight=False)

    stdout_console.rule(f"{len(selections)} prompt selections")
    for unit in selections:
        show(unit)
    stdout_console.rule(f"{len(cells)} cells")
    for unit in cells:
        show(unit)


def check_gpus(gpus: list[str] | None) -> None:
    """--gpus: each id is what CUDA_VISIBLE_DEVICES takes, an index or a GPU-/MIG- UUID (nvidia-smi
    -L); anything else makes CUDA see no GPU at all, so every cell would run on the CPU or fail.
    Each id once: one cell runs on a GPU at a time."""
    import re

    from pefomed.errors import UserError

    for gpu in gpus or []:
        if not isinstance(gpu, str) or not re.fullmatch(r"[0-9]+|(GPU|MIG)-[0-9A-Za-z/-]+", gpu):
            raise UserError(f"--gpus: {str(gpu)[:40]!r} is not a GPU id (an index such as 0, or a GPU-/MIG- UUID "
                            "from nvidia-smi -L)")
    if gpus and len(set(gpus)) != len(gpus):
        raise UserError(f"--gpus: a GPU is listed twice ({','.join(gpus)[:80]}); each runs one cell at a time")


def run_cells(cells, out: Path, **how) -> None:
    """The cells, those that infer with another cell's trained run (`after`: an ablation of a
    fine-tune) once the others are done; those whose cell failed are not started."""
    from pefomed.errors import UserError
    from pefomed.study.plan import CELLS_DIR, DONE

    failed = None
    try:
        run_units([c for c in cells if c.after is None], out, **how)
    except UserError as err:
        failed = err  # the rest still runs where it can; the failures are reported together
    later = [c for c in cells if c.after is not None and (out / CELLS_DIR / c.after / DONE).is_file()]
    try:
        if later:
            run_units(later, out, **how)
    except UserError as err:
        failed = UserError(f"{failed}\n{err}") if failed else err
    if failed:
        raise failed


def run_study(study_file: str | Path, out: str | Path, *, dry_run: bool = False, gpus: list[str] | None = None,
              executor=None) -> dict | None:
    """Plan the study in `study_file` into `out` (STUDY_DIR) and run what is not finished; with
    `dry_run`, only print the units, their state and their commands. `executor`: a submitit
    executor (one job per unit). Returns the report (None for a dry run)."""
    from pefomed.io import write_json

    check_gpus(gpus)
    study, root = load_study(study_file)
    out = Path(out).resolve()
    selections, cells = plan_study(study, root, out)
    if dry_run:
        print_plan(selections, cells, out)
        return None
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", {"study": study.model_dump(mode="json"), "root": str(root),
                                   "selections": [u.id for u in selections], "cells": [u.id for u in cells]})

    def tell(result):
        console.print(f"  {result['status']:>8}  {result['id']}", highlight=False)

    if selections:
        console.rule(f"prompt selection: {len(selections)} units")
        run_units(selections, out, gpus=gpus, executor=executor, on_result=tell)
        _, cells = plan_study(study, root, out)  # the chosen prompts are now part of the cells' commands
    console.rule(f"cells: {len(cells)}")
    run_cells(cells, out, gpus=gpus, executor=executor, on_result=tell)
    console.rule("report")
    from pefomed.study.report import build_report

    report = build_report(study, out, cells)
    for name in ("study.json", "study.md", "study.html"):
        console.print(f"wrote {out / name}", highlight=False)
    return report
