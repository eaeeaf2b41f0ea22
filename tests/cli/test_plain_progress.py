"""Piped to a file (SLURM logs), progress is plain lines as it goes, not one bar at the end."""

from __future__ import annotations

from pefomed import console as console_mod


def test_plain_progress_prints_lines_while_it_goes_and_at_the_end(capsys, monkeypatch):
    progress = console_mod.PlainProgress(every=0)  # a line at every update
    task = progress.add_task("training", total=4, completed=1, status="")
    progress.update(task, completed=2, status="loss 1.5")
    progress.advance(task)
    progress.stop()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("training:")]
    assert lines[0].startswith("training: 2/4") and "loss 1.5" in lines[0] and "eta" in lines[0]
    assert lines[1].startswith("training: 3/4") and lines[-1].startswith("training: 3/4")


def test_progress_bar_is_plain_when_not_a_terminal():
    # under pytest stderr is captured, not a terminal
    assert isinstance(console_mod.progress_bar(), console_mod.PlainProgress)


def test_quiet_between_lines(capsys):
    progress = console_mod.PlainProgress(every=3600)
    task = progress.add_task("generating", total=10)
    for _ in range(10):
        progress.advance(task)
    assert "generating" not in capsys.readouterr().err  # nothing until the interval or the end
    progress.stop()
    assert "generating: 10/10" in capsys.readouterr().err
