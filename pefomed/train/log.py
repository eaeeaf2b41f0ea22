"""What a run tells about itself while it trains: train_log.jsonl (one row per logged step),
eval_log.jsonl, best.json and TensorBoard, all written by the first process."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pefomed.console import console
from pefomed.io import atomic_write, write_json
from pefomed.models import run_dir as run_dir_layout


def _tensorboard(run_dir: Path):
    """A SummaryWriter in RUN_DIR/tensorboard when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / run_dir_layout.TENSORBOARD_DIR))



class RunLog:
    """train_log.jsonl, eval_log.jsonl, best.json and TensorBoard, written by the first process.

    On resume, rows after the checkpoint's step are dropped (they belong to the interrupted
    attempt and will be written again).
    """

    def __init__(self, run_dir: Path, is_main: bool, resumed_step: int | None, tensorboard: bool):
        self.train_path, self.eval_path, self.best_path = (
            run_dir / run_dir_layout.TRAIN_LOG, run_dir / run_dir_layout.EVAL_LOG, run_dir / run_dir_layout.BEST_JSON)
        self.is_main = is_main
        self.best = -math.inf
        if resumed_step is not None and self.best_path.exists():
            self.best = json.loads(self.best_path.read_text())["value"]
        if is_main:
            for path in (self.train_path, self.eval_path):
                if resumed_step is None or not path.exists():
                    path.unlink(missing_ok=True)
                    continue
                kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= resumed_step]
                with atomic_write(path) as handle:
                    handle.write("".join(line + "\n" for line in kept))
            if resumed_step is None:
                self.best_path.unlink(missing_ok=True)
        self.board = _tensorboard(run_dir) if tensorboard and is_main else None

    def _append(self, path: Path, row: dict) -> None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def train_row(self, row: dict) -> None:
        if self.is_main:
            self._append(self.train_path, row)
            if self.board:
                for key in ("loss", "lr", "samples_per_s", "peak_memory_mb"):
                    self.board.add_scalar(f"train/{key}", row[key], row["step"])

    def eval_row(self, step: int, evaluation) -> bool:
        """Record an evaluation (pefomed.train.evaluate.Evaluation); True when it is the best so far
        (on every process). A mixture's row adds each source's own metric, value and scaled value."""
        metric, value = evaluation.metric, evaluation.value
        improved = value > self.best
        self.best = max(self.best, value)
        if self.is_main:
            row = {"step": step, "metric": metric, "value": value, "best": self.best}
            if evaluation.sources is not None:
                row["sources"] = evaluation.sources
            self._append(self.eval_path, row)
            if improved:
                write_json(self.best_path, row)
            if self.board:
                self.board.add_scalar(f"val/{metric}", value, step)
                for name, entry in (evaluation.sources or {}).items():
                    self.board.add_scalar(f"val/{name}/{entry['metric']}", entry["value"], step)
            console.print(f"step {step}: val {metric} = {value:.4f}" + (" (best)" if improved else ""))
            for name, entry in (evaluation.sources or {}).items():
                console.print(f"  {name}: {entry['metric']} = {entry['value']:.4f} ({entry['samples']} samples)")
        return improved

    def close(self) -> None:
        if self.board:
            self.board.close()
