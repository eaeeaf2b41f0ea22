"""`pefomed study STUDY.yaml --out STUDY_DIR [--dry-run] [--gpus 0,1] [--cluster slurm ...]`."""

from __future__ import annotations

from pathlib import Path

import typer

from pefomed.cli import declared

EXAMPLE = """
Examples:

  pefomed study recipes/studies/tiny-head-to-head.yaml --out studies/tiny --dry-run

  pefomed study my-study.yaml --out studies/mine

  pefomed study my-study.yaml --out studies/mine --gpus 0,1,2,3

  pefomed study my-study.yaml --out studies/mine --cluster slurm --cluster-option slurm_partition=gpu --cluster-option timeout_min=600

Rerun the same command after an interruption: finished cells are kept, unfinished ones continue.
"""


def register(app: typer.Typer) -> None:
    from pefomed.options.study import StudyCommand

    def study(command: StudyCommand):
        from pefomed.study.run import run_study_command

        run_study_command(command, _study_path(command.study_file))

    declared.register(app, "study", StudyCommand, study,
                      help="Run a study: models x adaptations x data sets x seeds, prompt selection per model, and a "
                           "report of paired comparisons with Holm-corrected p-values." + EXAMPLE)


def _study_path(path: Path) -> Path:
    """A file, or a built-in study shipped in recipes/studies/ (e.g. tiny-head-to-head)."""
    if path.exists() or path.suffix:
        return path
    from importlib import resources

    builtin = Path(str(resources.files("pefomed.recipes") / "studies" / f"{path}.yaml"))
    return builtin if builtin.is_file() else path
