"""`pefomed study`: a grid of models x adaptations x data sets x seeds, run cell by cell with the
`pefomed` commands, and one table of paired comparisons (docs/studies.md).

spec (STUDY.yaml, validated) -> plan (cells, prompt selections, exact commands) -> runner
(subprocesses; one machine, several GPUs, or submitit) -> report (study.json / .md / .html).
The study stage sits on top of all the others: it may import any of them, none imports it.
"""
