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
            raise UserError(f"`gpus`: {str(gpu)[:40]!r} is not a GPU id (an index such as 0, or a GPU-/MIG- UUID "
                            "from nvidia-smi -L)")
    if gpus and len(set(gpus)) != len(gpus):
        raise UserError(f"`gpus`: a GPU is listed twice ({','.join(gpus)[:80]}); each runs one cell at a time")


def run_study_command(command, study_file: Path) -> None:
    """`pefomed study` with its declared options (pefomed.options.study.StudyCommand): where the
    cells run (this machine, its GPUs side by side, or a submitit cluster), then run_study."""
    from pefomed.errors import UserError

    gpus = command.gpus
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    if gpus is not None and not gpu_list:
        raise UserError("`gpus`: give GPU ids such as 0,1")
    check_gpus(gpu_list)
    if command.cluster_option and command.cluster is None:
        raise UserError("`cluster_option` goes with `cluster` slurm|local")
    if command.cluster is not None and gpu_list:
        raise UserError("`gpus` is for one machine; with `cluster` each job asks the scheduler for its GPU "
                        "(`cluster_option` gpus_per_node=1)")
    executor = None
    if command.cluster is not None:
        from pefomed.study.cluster import make_executor

        executor = make_executor(command.cluster, command.out, command.cluster_option or [])
    run_study(study_file, command.out, dry_run=command.dry_run, gpus=gpu_list, executor=executor)


def run_cells(cells, out: Path, **how) -> None:
    """The cells, in waves: first those that need no other cell, then each cell that needs another
    cell's trained run (`after`: an ablation of a fine-tune, or a fine-tune that starts from another
    stage's run, which an ablation may need in turn) once that cell is done; one whose cell failed
    is not started."""
    from pefomed.errors import UserError
    from pefomed.study.plan import CELLS_DIR, DONE

    failed = None
    wave = [c for c in cells if c.after is None]
    started = set()
    while wave:
        started.update(c.id for c in wave)
        try:
            run_units(wave, out, **how)
        except UserError as err:  # the rest still runs where it can; the failures are reported together
            failed = UserError(f"{failed}\n{err}") if failed else err
        wave = [c for c in cells if c.id not in started and c.after is not None
                and (out / CELLS_DIR / c.after / DONE).is_file()]
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
