"""How a model is asked, for baselines compared head to head: system prompt, instruction template,
few-shot exemplars, closed answers by generation or ranking, the blind control and the image
ablations (blank, shuffled, mismatched: pefomed.data.image_ablation).

`Prompting` gathers these options (the `pefomed infer` flags); `predict(..., prompting=...)` applies
them and `prompt_settings` writes down what was asked, as a JSON-able dict for the file beside
PRED.jsonl. Exemplars are chosen by `select_exemplars` from the data and a seed alone, never from a
model, so every model compared on a split sees the very same solved examples (docs/prompting.md).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from pefomed.errors import UserError
from pefomed.options.infer import PromptOptions
from pefomed.records import Sample


def _group(sample: Sample) -> tuple[str, str | None]:
    # answer_type only splits VQA: a report has none
    return sample.task, sample.answer_type if sample.task == "vqa" else None


def _rng(seed: int, query_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{query_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class ExemplarPicker:
    """`select_exemplars` for many queries over one pool (grouped and sorted once)."""

    def __init__(self, train_samples: Sequence[Sample], k: int, seed: int):
        if k < 0:
            raise UserError(f"shots must be 0 or more, got {k}")
        self.k, self.seed = k, seed
        self.groups: dict[tuple, list[Sample]] = {}
        # sorted by id: the choice depends on the pool's content, not on the order of its file
        for sample in sorted(train_samples, key=lambda s: s.id):
            self.groups.setdefault(_group(sample), []).append(sample)
            self.groups.setdefault((sample.task, "*"), []).append(sample)

    def __call__(self, query: Sample) -> list[Sample]:
        if self.k == 0:
            return []
        rng = _rng(self.seed, query.id)
        own_images = set(query.images)

        # never the query itself, nor another question on the query's own image (it would show
        # the model the answer's evidence beside a solved question about the same picture)
        def usable(sample: Sample) -> bool:
            return sample.id != query.id and not own_images & set(sample.images)

        for key in (_group(query), (query.task, "*")):  # too few of the same answer type: any of the task
            pool = self.groups.get(key, [])
            chosen = _draw(pool, self.k, rng, usable)
            if chosen is not None:
                return chosen
        n = sum(usable(s) for s in self.groups.get((query.task, "*"), []))
        raise UserError(f"few-shot: only {n} usable {query.task} exemplars for sample {query.id} "
                        f"(need {self.k}; the query itself and questions on its image are excluded)",
                        hint="lower the number of shots or use a larger train split")


def _draw(pool: list[Sample], k: int, rng: random.Random, usable) -> list[Sample] | None:
    """k distinct usable samples of `pool` in random order, or None when it has fewer. Draws
    indices lazily (a query costs O(k), not O(pool), on a large train split) and falls back to
    filtering the whole pool when unusable samples keep coming up."""
    picked: list[int] = []
    seen: set[int] = set()
    for _ in range(20 * k + 50):
        if len(picked) == k or len(seen) == len(pool):
            break
        i = rng.randrange(len(pool)) if pool else 0
        if not pool or i in seen:
            continue
        seen.add(i)
        if usable(pool[i]):
            picked.append(i)
    if len(picked) == k:
        return [pool[i] for i in picked]
    rest = [i for i in range(len(pool)) if i not in seen and usable(pool[i])]
    if len(picked) + len(rest) < k:
        return None
    return [pool[i] for i in picked + rng.sample(rest, k - len(picked))]


def select_exemplars(train_samples: Sequence[Sample], k: int, seed: int, query: Sample) -> list[Sample]:
    """K solved examples for `query`, drawn from `train_samples` by a hash of (seed, query id).

    Same task and, for VQA, the same answer type (closed with closed, open with open; any of the
    task when too few), never the query itself nor a sample sharing one of its images. Depends
    only on the seed and the data: the same for every model, every batch size, every run."""
    return ExemplarPicker(train_samples, k, seed)(query)


def load_exemplar_pool(data_dir: str | Path, split: str) -> list[Sample]:
    """The solved samples of DATA_DIR/{split}.jsonl, image paths made absolute so they resolve
    whichever folder the questions' own images are relative to."""
    from pefomed.records import read_split, resolve_image

    data_dir = Path(data_dir).resolve()
    return [replace(s, images=[str(resolve_image(data_dir, p, s.id)) for p in s.images])
            for s in read_split(data_dir, split)]


@dataclass(frozen=True, kw_only=True)
class Prompting(PromptOptions):
    """The prompt of one inference: the declared options (pefomed.options.infer.PromptOptions, each
    default the recipe's own zero-shot prompt) and what inference does with them.

    system_prompt: replaces data.system_prompt. template: replaces data.vqa_template (a template
    with {question}, or "pool:NAME"); report requests keep data.report_prompt. shots, shots_seed:
    K exemplars per question from `exemplar_dir`/`exemplar_split` (default: the questions' DATA_DIR
    when it has that split, else the recipe's data.dir). closed_answer: "rank" scores each
    candidate of a closed question instead of generating (pefomed.infer.rank). blind: no image.
    image_ablation, image_ablation_seed: show a blank image, or another sample's (shuffled,
    mismatched), drawn with the seed; `ablation` is the plan (who is shown what), made from the
    whole sample list before a data-parallel run shards it (`with_ablation`).
    """

    _picked: dict = field(default_factory=dict, repr=False, compare=False)  # the last exemplars chosen
    ablation: object = field(default=None, repr=False, compare=False)  # an ImageAblation, see with_ablation

    @classmethod
    def of(cls, options: PromptOptions | None) -> "Prompting":
        """The Prompting of declared prompt options (itself when it already is one)."""
        if isinstance(options, Prompting):
            return options
        options = options or PromptOptions()
        return cls(**{f.name: getattr(options, f.name) for f in fields(PromptOptions)})

    def with_ablation(self, samples: Sequence[Sample]) -> "Prompting":
        """This prompting with its ablation planned over `samples` (all of them: before sharding);
        itself when there is no ablation or it is already planned."""
        if self.image_ablation is None or self.ablation is not None:
            return self
        from pefomed.data.image_ablation import plan_ablation

        return replace(self, ablation=plan_ablation(samples, self.image_ablation, self.image_ablation_seed))

    def data_section(self, data):
        """The recipe's DataSection with this inference's system prompt and template."""
        updates = {}
        if self.system_prompt is not None:
            updates["system_prompt"] = self.system_prompt
        if self.template is not None:
            updates["vqa_template"] = self.template
        if not updates:
            return data
        return type(data).model_validate({**data.model_dump(), **updates})

    def exemplar_source(self, image_root: str | Path, data) -> tuple[Path, str]:
        split = self.exemplar_split or data.train_split
        if self.exemplar_dir:
            return Path(self.exemplar_dir), split
        for folder in (image_root, data.dir):
            if folder and (Path(folder) / f"{split}.jsonl").is_file():
                return Path(folder), split
        raise UserError(f"few-shot needs solved examples: no '{split}' split beside the questions "
                        f"({image_root}) nor in the recipe's data.dir ({data.dir})",
                        hint="answer a prepared DATA_DIR (`data`) that has a train split")

    def exemplars(self, samples: Sequence[Sample], image_root: str | Path, data) -> dict[str, list[Sample]]:
        """{sample id: its exemplars} ({} without shots)."""
        if not self.shots:
            return {}
        folder, split = self.exemplar_source(image_root, data)
        # predict and prompt_settings both ask for the same run's exemplars: read and pick once
        key = (str(Path(folder).resolve()), split, tuple(s.id for s in samples))
        if key not in self._picked:
            picker = ExemplarPicker(load_exemplar_pool(folder, split), self.shots, self.shots_seed)
            self._picked.clear()
            self._picked[key] = {s.id: picker(s) for s in samples}
        return self._picked[key]


def prompt_settings(samples: Sequence[Sample], image_root: str | Path, recipe, processor,
                    prompting: Prompting | None = None, max_new_tokens: int | None = None,
                    num_beams: int | None = None) -> dict:
    """What each question of `samples` was asked, JSON-able, to keep beside PRED.jsonl: system
    prompt and how the chat template took it, templates, shots, seed, every question's exemplar
    ids, closed-answer mode and the questions it ranked, blind and what the model saw instead."""
    from pefomed.data.collate import blind_mode, system_turn_supported
    from pefomed.infer.rank import RANK_RULE, closed_candidates

    prompting = Prompting.of(prompting).with_ablation(samples)
    data = prompting.data_section(recipe.data)
    exemplars = prompting.exemplars(samples, image_root, data)
    settings = {
        "system_prompt": data.system_prompt,
        "system_prompt_as": None if not data.system_prompt else
        "system turn" if system_turn_supported(processor) else "prepended to the first user text",
        "vqa_template": data.vqa_template,
        "report_prompt": data.report_prompt,
        "template_seed": data.template_seed,
        "shots": prompting.shots,
        "shots_seed": prompting.shots_seed,
        "closed_answer": prompting.closed_answer,
        "blind": prompting.blind,
        "blind_input": blind_mode(processor) if prompting.blind else None,
        "image_ablation": None,
        "max_new_tokens": max_new_tokens or recipe.infer.max_new_tokens,
        "num_beams": num_beams or recipe.infer.num_beams,
    }
    if prompting.shots:
        folder, split = prompting.exemplar_source(image_root, data)
        settings["exemplar_source"] = {"dir": str(Path(folder).resolve()), "split": split}
        settings["exemplars"] = {sid: [e.id for e in chosen] for sid, chosen in exemplars.items()}
    if prompting.ablation is not None:  # the ablation, its seed and a sha256 of who was shown what
        settings.update(prompting.ablation.settings())
    if prompting.closed_answer == "rank":
        settings["rank_rule"] = RANK_RULE
        settings["ranked"] = [s.id for s in samples if closed_candidates(s) is not None]
    return settings
