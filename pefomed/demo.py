"""`pefomed demo`: the whole pipeline on the embedded default, with nothing to download.

prepare (the bundled VQA-RAD subset, data-rad layout) -> train (the built-in tiny LLaVA with
LoRA under DeepSpeed ZeRO-2) -> infer (the test split) -> score (VQA accuracy with intervals).
The model is tiny and random at the start, so the numbers only show that every stage works.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pefomed.console import console
from pefomed.data.prepare import prepare
from pefomed.data.summary import print_summary
from pefomed.errors import UserError
from pefomed.infer.run import infer
from pefomed.recipe import builtin_recipe_path, load_recipe
from pefomed.score.run import score_files
from pefomed.score.terminal import print_metrics
from pefomed.train.loop import train

DEMO_DATA = ("resources", "demo", "vqa-rad-mini")


def demo_source() -> Path:
    return Path(str(resources.files("pefomed").joinpath(*DEMO_DATA)))


def run_demo(out: str | Path, overrides: list[str] | None = None) -> dict[str, Path]:

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty; choose another `out` for the demo")
    paths = {"data": out / "data", "run": out / "run", "predictions": out / "pred.jsonl",
             "metrics": out / "metrics.json", "report": out / "report"}

    console.rule("1/4 prepare")
    manifest = prepare(demo_source(), "data-rad", paths["data"])
    print_summary(manifest, paths["data"])

    console.rule("2/4 train")
    recipe = load_recipe(builtin_recipe_path("tiny-demo"), overrides)
    recipe.data.dir = str(paths["data"].resolve())
    train(recipe, paths["run"])

    console.rule("3/4 infer")
    infer(str(paths["run"]), paths["predictions"], data=paths["data"], split="test")

    console.rule("4/4 score")
    metrics = score_files([paths["predictions"]], out=paths["metrics"], report=paths["report"])
    print_metrics(metrics)

    # plain lines, not a table: full paths must never be cut to the terminal's width
    console.rule("pefomed demo: outputs")
    for stage, path in (("prepared data", paths["data"]), ("run (adapter, logs, checkpoints)", paths["run"]),
                        ("predictions", paths["predictions"]), ("metrics", paths["metrics"]),
                        ("report", paths["report"] / "report.html")):
        console.print(f"{stage}: {path}", soft_wrap=True, highlight=False)
    return paths
