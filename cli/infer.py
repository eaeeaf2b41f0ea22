"""`pefomed infer SOURCE (--data DATA_DIR [--split test] | --images FOLDER [--question ... | --questions FILE]) --out PRED.jsonl`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

EXAMPLE = """
Examples:

  pefomed infer runs/demo --data prepared/vqa-rad --split test --out runs/demo/pred.jsonl

  pefomed infer runs/demo/best --data prepared/vqa-rad --split test --out best.jsonl

  pefomed infer path/to/Qwen2.5-VL-3B-Instruct --data prepared/vqa-rad --out zero-shot.jsonl --template "{question} Answer with a single word or phrase."

  pefomed infer runs/demo --images my_xrays/ --question "Is there a pleural effusion?" --out pred.jsonl

  pefomed infer runs/demo --images my_xrays/ --out reports.jsonl   (the run's report prompt)

  pefomed infer runs/demo --images my_xrays/ --questions questions.csv --out pred.jsonl   (columns image,question[,id,reference])

  pefomed infer runs/demo --images ct_folders/ --series-frames 3 --question "Is there a mass?" --out pred.jsonl   (each DICOM series or NIfTI volume: 3 slices)

  pefomed infer runs/demo --data prepared/vqa-rad --batch-size auto --workers 4 --out pred.jsonl

  pefomed infer runs/demo --data prepared/vqa-rad --image-ablation shuffled --image-ablation-seed 1 --out shuffled.jsonl

  torchrun --nproc_per_node 4 -m pefomed.cli.app infer runs/demo --data prepared/vqa-rad --out pred.jsonl   (data-parallel)
"""


def register(app: typer.Typer) -> None:
    @app.command(help="Generate answers or reports with a trained run or a base model (zero-shot)." + EXAMPLE)
    def infer(
        source: str = typer.Argument(..., metavar="SOURCE",
                                     help="A RUN_DIR (or RUN_DIR/best), a model folder or hub id never trained here, "
                                          "or a recipe (file or built-in name)."),
        out: Path = typer.Option(..., "--out", "-o", help="PRED.jsonl to write (and PRED.settings.json beside it)."),
        data: Optional[Path] = typer.Option(None, "--data", help="A prepared DATA_DIR."),
        split: str = typer.Option("test", "--split", help="Split of DATA_DIR to answer."),
        images: Optional[Path] = typer.Option(None, "--images", help="A folder of images (PNG, JPEG, DICOM)."),
        question: Optional[str] = typer.Option(None, "--question", help="Question asked of every image in --images."),
        questions: Optional[Path] = typer.Option(None, "--questions", help="A CSV (with a header) or JSONL file of "
                                                 "questions: image (relative to --images), question, optional id "
                                                 "(default IMAGE#N) and reference; many questions per image."),
        batch_size: Optional[str] = typer.Option(None, "--batch-size", help="A number, or auto (CUDA: the largest "
                                                 "that fits, halving from 256 on out-of-memory; CPU: the source's); "
                                                 "default: the source's infer.batch_size."),
        workers: int = typer.Option(0, "--workers", help="Processes decoding images and encoding prompts ahead of "
                                    "the model (0: in the main process); the answers are the same."),
        max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Default: the source's infer.max_new_tokens."),
        template: Optional[str] = typer.Option(None, "--template", help="VQA instruction template with {question} "
                                               "(or pool:NAME); default: the source recipe's data.vqa_template."),
        report_prompt: Optional[str] = typer.Option(None, "--report-prompt", help="Report prompt; default: the source "
                                                    "recipe's data.report_prompt."),
        system_prompt: Optional[str] = typer.Option(None, "--system-prompt", help="A system turn before every prompt "
                                                    "(prepended to the user text where the chat template has none)."),
        shots: int = typer.Option(0, "--shots", help="K solved train-split examples before each question, as earlier "
                                  "turns with their images (few-shot)."),
        shots_seed: int = typer.Option(0, "--shots-seed", help="Seed choosing the few-shot examples (the same for "
                                       "every model)."),
        closed_answer: str = typer.Option("generate", "--closed-answer", help="Closed questions: generate, or rank the "
                                          "candidates (meta options, else the alternatives the question names and "
                                          "yes/no for a yes/no question) by log-likelihood."),
        blind: bool = typer.Option(False, "--blind", help="Ask without the image (a blank one where the family needs "
                                   "an image): how much of a score the image earns."),
        image_ablation: Optional[str] = typer.Option(None, "--image-ablation", help="Show each question a "
                                                     "content-free or wrong image in its image slot: blank (a black "
                                                     "image of the same size), shuffled (another sample's image), or "
                                                     "mismatched (an image of another organ/modality); not with "
                                                     "--blind."),
        image_ablation_seed: int = typer.Option(0, "--image-ablation-seed", help="Seed of the shuffled or "
                                                "mismatched assignment."),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="--images: skip unreadable, empty, truncated or too "
                                      "large images (each listed with its reason in PRED.skipped.jsonl)."),
        limit: Optional[int] = typer.Option(None, "--limit", help="Answer a seeded subsample of N samples (prompt "
                                            "selection on validation data)."),
        limit_seed: int = typer.Option(0, "--limit-seed", help="Seed of the --limit subsample."),
        temperature: Optional[float] = typer.Option(None, "--temperature", help="Sample at this temperature (0: "
                                                    "greedy, the default)."),
        top_p: Optional[float] = typer.Option(None, "--top-p", help="Nucleus sampling threshold (with --temperature)."),
        repetition_penalty: Optional[float] = typer.Option(None, "--repetition-penalty", help="Above 1 discourages "
                                                           "repeated tokens."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed (batch by batch)."),
        num_beams: Optional[int] = typer.Option(None, "--num-beams", help="Beam search width; default: the "
                                                "source's infer.num_beams (1: greedy or sampling)."),
        num_return_sequences: Optional[int] = typer.Option(None, "--num-return-sequences", help="Answers per "
                                                           "question (the best beams, or samples), all kept in "
                                                           "`predictions`; `prediction` is the first."),
        series_frames: int = typer.Option(1, "--series-frames", help="--images: slices shown of each DICOM series "
                                          "(a folder's slices of one SeriesInstanceUID) or NIfTI volume (.nii, "
                                          ".nii.gz: its axial slices), evenly spaced in order; "
                                          "1: the middle slice."),
        stop: Optional[List[str]] = typer.Option(None, "--stop", help="Stop at this string (repeatable); it is cut "
                                                 "from the answer."),
        trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow Python code shipped with the "
                                               "model to run (needed each time; never taken from a RUN_DIR)."),
    ):
        from pefomed.console import console
        from pefomed.infer.fewshot import Prompting
        from pefomed.infer.run import InferOptions, infer as run_infer, process_shard

        prompting = Prompting(system_prompt=system_prompt, template=template, shots=shots, shots_seed=shots_seed,
                              closed_answer=closed_answer, blind=blind, image_ablation=image_ablation,
                              image_ablation_seed=image_ablation_seed)
        options = InferOptions(batch_size=batch_size, max_new_tokens=max_new_tokens,
                               trust_remote_code=trust_remote_code, report_prompt=report_prompt,
                               prompting=prompting, skip_bad=skip_bad, limit=limit, limit_seed=limit_seed, temperature=temperature,
                               top_p=top_p, repetition_penalty=repetition_penalty, seed=seed, stop=stop or None,
                               num_beams=num_beams, num_return_sequences=num_return_sequences, num_workers=workers,
                               series_frames=series_frames)
        written = run_infer(source, out, data=data, split=split, images=images, question=question, options=options,
                            questions=questions)
        if process_shard()[0] == 0:  # under a launcher, rank 0 writes the merged file
            console.print(f"predictions: {written}")
