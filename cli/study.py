"""`pefomed study STUDY.yaml --out STUDY_DIR [--dry-run] [--gpus 0,1] [--cluster slurm ...]`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

EXAMPLE = """
Examples:

  pefomed study recipes/studies/tiny-head-to-head.yaml --out studies/tiny --dry-run

  pefomed study my-study.yaml --out studies/mine

  pefomed study my-study.yaml --out studies/mine --gpus 0,1,2,3

  pefomed study my-study.yaml --out studies/mine --cluster slurm --cluster-option slurm_partition=gpu --cluster-option timeout_min=600

Rerun the same command after an interruption: finished cells are kept, unfinished ones continue.
"""


def register(app: typer.Typer) -> None:
    @app.command(help="Run a study: models x adaptations x data sets x seeds, prompt selection per model, "
                      "and a report of paired comparisons with Holm-corrected p-values." + EXAMPLE)
    def study(
        study_file: Path = typer.Argument(..., help="STUDY.yaml (docs/studies.md), or a built-in name under recipes/studies/."),
        out: Path = typer.Option(..., "--out", "-o", help="STUDY_DIR: cells/, selections/, study.json/.md/.html."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List the cells, their state and the exact commands; run nothing."),
        gpus: Optional[str] = typer.Option(None, "--gpus", help="Comma-separated GPU ids: cells run side by side, one GPU each."),
        cluster: Optional[str] = typer.Option(None, "--cluster", help="Run each cell as a submitit job: slurm, or local "
                                              "(submitit's local processes)."),
        cluster_option: Optional[List[str]] = typer.Option(None, "--cluster-option", help="key=value for submitit's "
                                                           "update_parameters, e.g. slurm_partition=gpu, timeout_min=600, "
                                                           "gpus_per_node=1 (repeatable)."),
    ):
        from pefomed.errors import UserError
        from pefomed.study.run import check_gpus, run_study

        gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
        if gpus is not None and not gpu_list:
            raise UserError("--gpus: give GPU ids such as 0,1")
        check_gpus(gpu_list)
        if cluster_option and cluster is None:
            raise UserError("--cluster-option goes with --cluster slurm|local")
        if cluster is not None and gpu_list:
            raise UserError("--gpus is for one machine; with --cluster each job asks the scheduler for its GPU "
                            "(--cluster-option gpus_per_node=1)")
        executor = None
        if cluster is not None:
            from pefomed.study.cluster import make_executor

            executor = make_executor(cluster, out, cluster_option or [])
        run_study(_study_path(study_file), out, dry_run=dry_run, gpus=gpu_list, executor=executor)


def _study_path(path: Path) -> Path:
    """A file, or a built-in study shipped in recipes/studies/ (e.g. tiny-head-to-head)."""
    if path.exists() or path.suffix:
        return path
    from importlib import resources

    builtin = Path(str(resources.files("pefomed.recipes") / "studies" / f"{path}.yaml"))
    return builtin if builtin.is_file() else path
