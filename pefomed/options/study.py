"""`pefomed study`'s options, declared once (pefomed.options.declare). What a study runs is its
STUDY.yaml (pefomed.study.spec); these say where and how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.options.declare import Options, option

CLUSTERS = ("slurm", "local")


@dataclass(kw_only=True)
class StudyCommand(Options):
    """`pefomed study STUDY.yaml --out STUDY_DIR [--dry-run] [--gpus 0,1] [--cluster slurm ...]`."""

    study_file: Path = option(help="STUDY.yaml (docs/studies.md), or a built-in name under recipes/studies/.",
                              positional=True)
    out: Path = option(help="STUDY_DIR: cells/, selections/, study.json/.md/.html.", short="-o")
    dry_run: bool = option(False, "List the cells, their state and the exact commands; run nothing.")
    gpus: str | None = option(None, "Comma-separated GPU ids: cells run side by side, one GPU each.")
    cluster: str | None = option(None, "Run each cell as a submitit job: slurm, or local (submitit's local "
                                       "processes).", choices=CLUSTERS)
    cluster_option: list[str] | None = option(None, "key=value for submitit's update_parameters, e.g. "
                                                    "slurm_partition=gpu, timeout_min=600, gpus_per_node=1 "
                                                    "(repeatable).")
