"""`pefomed infer`'s options, declared once (pefomed.options.declare).

PromptOptions: what each question is asked (system prompt, template, shots, closed-answer mode,
the image controls); pefomed.infer.fewshot.Prompting adds the behaviour. InferOptions: everything
besides what to answer, each None keeping the source's own setting (a RUN_DIR's recipe, or the
defaults of a model never trained here); the generation settings are the recipe's infer.* fields
(`recipe=`), so the flag and the recipe key share help and range. InferCommand: the command, with
its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.errors import UserError
from pefomed.options.declare import Options, nested, option
from pefomed.recipe import MAX_BATCH, MAX_SEQUENCES, MAX_WORKERS, SEED_MAX, Recipe

CLOSED_ANSWER_MODES = ("generate", "rank")
IMAGE_ABLATIONS = ("blank", "shuffled", "mismatched")  # pefomed.data.image_ablation plans each
_NON_BLANK = (lambda v: bool(str(v).strip()), "a non-empty text (leave it out for none)")


def _batch_size_ok(value) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        return text == "auto" or text.isdigit() and 1 <= int(text) <= MAX_BATCH
    return 1 <= value <= MAX_BATCH


@dataclass(frozen=True, kw_only=True)
class PromptOptions(Options):
    """The prompt of one inference (each default is the recipe's own zero-shot prompt)."""

    system_prompt: str | None = option(None, "A system turn before every prompt (prepended to the user text where "
                                             "the chat template has none).", check=_NON_BLANK)
    template: str | None = option(None, "VQA instruction template with {question} (or pool:NAME); default: the "
                                        "source recipe's data.vqa_template.")
    shots: int = option(0, "K solved train-split examples before each question, as earlier turns with their images "
                           "(few-shot).", low=0, high=MAX_SEQUENCES)  # each shot is one more image and turn
    shots_seed: int = option(0, "Seed choosing the few-shot examples (the same for every model).", low=0,
                             high=SEED_MAX)  # hashed with each question's id
    closed_answer: str = option("generate", "Closed questions: generate, or rank the candidates (meta options, else "
                                            "the alternatives the question names and yes/no for a yes/no question) "
                                            "by log-likelihood.", choices=CLOSED_ANSWER_MODES)
    blind: bool = option(False, "Ask without the image (a blank one where the family needs an image): how much of a "
                                "score the image earns.")
    image_ablation: str | None = option(None, "Show each question a content-free or wrong image in its image slot: "
                                              "blank (a black image of the same size), shuffled (another sample's "
                                              "image), or mismatched (an image of another organ/modality); not with "
                                              "`blind`.", choices=IMAGE_ABLATIONS)
    image_ablation_seed: int = option(0, "Seed of the shuffled or mismatched assignment.", low=0, high=SEED_MAX)
    # where few-shot examples come from (Python callers; the command takes the questions' DATA_DIR)
    exemplar_dir: str | None = option(None, "Folder of the few-shot examples' split.", cli=False)
    exemplar_split: str | None = option(None, "Split of the few-shot examples (default: data.train_split).",
                                        cli=False)

    def validate(self) -> None:
        super().validate()
        if self.template is not None:
            from pefomed.instructions import check

            check(self.template, "template", needs_question=True)
        if self.blind and self.image_ablation is not None:
            # two answers to one question (what does the image earn?): mixed, neither would be measured
            raise UserError(f"`blind` and `image_ablation` {self.image_ablation} are two image controls; choose one")


@dataclass(kw_only=True)
class InferOptions(Options):
    """Everything `pefomed infer` takes besides what to answer; None keeps the source's setting."""

    batch_size: int | str | None = option(None, "A number, or auto (CUDA: the largest that fits, halving from 256 on "
                                                "out-of-memory; CPU: the source's); default: the source's "
                                                "infer.batch_size.",
                                          check=(_batch_size_ok, f"a whole number from 1 to {MAX_BATCH}, or 'auto'"))
    num_workers: int = option(0, "Processes decoding images and encoding prompts ahead of the model (0: in the main "
                                 "process); the answers are the same.", flag="workers", low=0, high=MAX_WORKERS)
    max_new_tokens: int | None = option(None, recipe="infer.max_new_tokens", low=1)
    report_prompt: str | None = option(None, "Report prompt; default: the source recipe's data.report_prompt.")
    prompting: PromptOptions = nested(PromptOptions)
    skip_bad: bool = option(False, "`images`: skip unreadable, empty, truncated or too large images (each listed "
                                   "with its reason in PRED.skipped.jsonl).")
    limit: int | None = option(None, "Answer a seeded subsample of N samples (prompt selection on validation data).",
                               low=1)
    limit_seed: int = option(0, "Seed of the `limit` subsample.", low=0, high=SEED_MAX)  # random.Random(seed).sample
    temperature: float | None = option(None, recipe="infer.temperature")
    top_p: float | None = option(None, recipe="infer.top_p")
    repetition_penalty: float | None = option(None, recipe="infer.repetition_penalty")
    seed: int | None = option(None, recipe="infer.seed")
    num_beams: int | None = option(None, recipe="infer.num_beams", low=1)
    num_return_sequences: int | None = option(None, recipe="infer.num_return_sequences", low=1)
    series_frames: int = option(1, "`images`: slices shown of each DICOM series (a folder's slices of one "
                                   "SeriesInstanceUID) or NIfTI volume (.nii, .nii.gz: its axial slices), evenly "
                                   "spaced in order; 1: the middle slice.",
                                low=1, high=MAX_SEQUENCES)  # each slice is a whole image of tokens
    stop: list[str] | None = option(None, "Repeatable; the string is cut from the answer.", recipe="infer.stop")
    trust_remote_code: bool = option(False, "Allow Python code shipped with the model to run (needed each time; "
                                            "never taken from a RUN_DIR).")

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, str) and self.batch_size.strip().isdigit():
            self.batch_size = int(self.batch_size)  # the command line's text
        elif isinstance(self.batch_size, str):
            self.batch_size = self.batch_size.strip().lower() or self.batch_size
        if self.stop == []:
            self.stop = None
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if self.report_prompt is not None:  # the rules of data.report_prompt, which it replaces
            from pefomed.instructions import check

            check(self.report_prompt, "report_prompt", needs_question=False)

    # the options that set a recipe key of the source, and the key each sets
    RECIPE_KEYS = ("temperature", "top_p", "repetition_penalty", "seed", "stop", "num_beams", "num_return_sequences")

    def apply(self, recipe: Recipe) -> None:
        """Put the given generation settings and report prompt into the source's recipe."""
        for key in self.RECIPE_KEYS:
            value = getattr(self, key)
            if value is not None:
                setattr(recipe.infer, key, value)
        if self.report_prompt is not None:
            recipe.data.report_prompt = self.report_prompt


@dataclass(kw_only=True)
class InferCommand(Options):
    """`pefomed infer SOURCE (--data DATA_DIR [--split test] | --images FOLDER [...]) --out PRED.jsonl`."""

    source: str = option(help="A RUN_DIR (or RUN_DIR/best), a model folder or hub id never trained here, or a recipe "
                              "(file or built-in name).", positional=True, metavar="SOURCE")
    out: Path = option(help="PRED.jsonl to write (and PRED.settings.json beside it).", short="-o")
    data: Path | None = option(None, "A prepared DATA_DIR.")
    split: str = option("test", "Split of DATA_DIR to answer.")
    images: Path | None = option(None, "A folder of images (PNG, JPEG, DICOM, NIfTI).")
    question: str | None = option(None, "Question asked of every image in `images`.")
    questions: Path | None = option(None, "A CSV (with a header) or JSONL file of questions: image (relative to "
                                          "`images`), question, optional id (default IMAGE#N) and reference; many "
                                          "questions per image.")
    options: InferOptions = nested(InferOptions)
