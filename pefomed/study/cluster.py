"""Cluster execution through submitit (SLURM, or submitit's local executor): one job per unit.

pefomed has no scheduler of its own: submitit submits each cell as a job that runs the same
`pefomed` commands as a local run, into the same STUDY_DIR (which must be on a file system the
nodes share). Needs the `cluster` extra (`pip install -e ".[cluster]"`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pefomed.errors import UserError


def make_executor(cluster: str, study_dir: Path, options: list[str]):
    try:
        import submitit
    except ImportError:
        raise UserError("`cluster` needs submitit: pip install 'pefomed[cluster]' (or pip install submitit)") from None
    if cluster not in ("slurm", "local"):
        raise UserError(f"`cluster` must be slurm or local, got {cluster!r}")
    params = {}
    for pair in options:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"`cluster_option` {pair!r}: expected key=value, e.g. slurm_partition=gpu")
        params[key.strip()] = yaml.safe_load(raw) if raw else None
    executor = submitit.AutoExecutor(folder=Path(study_dir) / "submitit" / "%j", cluster=cluster)
    try:
        executor.update_parameters(**params)
    except (TypeError, ValueError, NameError) as err:  # submitit names an unknown key with NameError
        raise UserError(f"`cluster_option`: {err}") from None
    return executor
