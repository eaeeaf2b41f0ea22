"""Terminal output: one Rich console (stderr, so stdout stays clean for piping) and progress bars."""

from __future__ import annotations

import datetime
import os
import time
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

# soft_wrap: a line piped to a file (a SLURM log) is never cut at 80 columns mid-path
console = Console(stderr=True, soft_wrap=True)
# what a command was asked to show (a plan, a listing) goes to stdout, so it can be piped
stdout_console = Console(soft_wrap=True)
_interrupt_explained = False


def explain_interrupt(message: str) -> None:
    """What a command kept when Ctrl-C stopped it; the CLI then skips its generic message."""
    global _interrupt_explained
    _interrupt_explained = True
    console.print(message, highlight=False)


def interrupt_explained() -> bool:
    return _interrupt_explained
T = TypeVar("T")


class PlainProgress:
    """Progress for a log file (stdout/stderr not a terminal, e.g. under SLURM): a plain line
    every PEFOMED_PROGRESS_EVERY seconds (default 30) and at the end, instead of a bar that Rich
    would draw only once, at the end. The subset of rich.progress.Progress that pefomed uses."""

    def __init__(self, every: float | None = None):
        self.every = every if every is not None else float(os.environ.get("PEFOMED_PROGRESS_EVERY", "30"))
        self.tasks: dict[int, dict] = {}

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        task = len(self.tasks)
        self.tasks[task] = {"description": description, "total": total, "completed": completed,
                            "fields": dict(fields), "start": time.monotonic(), "printed": time.monotonic()}
        return task

    def update(self, task: int, *, advance: float | None = None, completed: float | None = None, **fields) -> None:
        state = self.tasks[task]
        if completed is not None:
            state["completed"] = completed
        if advance is not None:
            state["completed"] += advance
        state["fields"].update(fields)
        if time.monotonic() - state["printed"] >= self.every:
            self._line(task)

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def _line(self, task: int) -> None:
        state = self.tasks[task]
        state["printed"] = time.monotonic()
        elapsed = state["printed"] - state["start"]
        total = state["total"]
        done = state["completed"]
        eta = ""
        if total and done:
            eta = f", eta {datetime.timedelta(seconds=round(elapsed / done * (total - done)))}"
        status = state["fields"].get("status") or ""
        console.print(f"{state['description']}: {done:g}/{total if total is not None else '?'}"
                      f" ({datetime.timedelta(seconds=round(elapsed))} elapsed{eta}) {status}".rstrip(),
                      highlight=False, markup=False)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for task in self.tasks:
            self._line(task)

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def progress_bar() -> Progress | PlainProgress:
    if not console.is_terminal:
        return PlainProgress()
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("eta"), TimeRemainingColumn(), TextColumn("elapsed"), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console, transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar showing done/total and the ETA."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar() as bar:
        task = bar.add_task(description, total=total, status="")
        for item in items:
            yield item
            bar.advance(task)
