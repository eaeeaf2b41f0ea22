"""data.mix: several DATA_DIRs drawn by ratio. The draw is a pure function of (seed, micro-batch,
rank, world) whose global batch does not depend on the process count, a one-source mixture is
data.dir, the realised shares match the ratios, each source resolves its own images and is
evaluated with its own metric, a resumed mixture run equals an uninterrupted one, and mistakes
are one message through the installed CLI."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch
from pefomed.cli.app import main
from safetensors.torch import load_file

from pefomed.data import mixture
from pefomed.data.mixture import MixtureBatches, Source, mixture_picks, quotas
from pefomed.data.train_batches import EpochPlan, micro_batch_indices

PEFOMED = shutil.which("pefomed")


def picks_of(sizes, ratios, batch, world, seed=0, epochs=3.0):
    """A MixtureBatches per rank (no collator needed for picks) and its plan."""
    quota = quotas(sizes, ratios)
    plan = EpochPlan.make(sum(quota), batch, world, 1, epochs, None, where="test")
    sources = [Source(f"s{i}", None, r) for i, r in enumerate(ratios)]
    samples = [[None] * n for n in sizes]
    return [MixtureBatches(sources, samples, [None] * len(sizes), plan, quota, batch, seed, rank, world, False)
            for rank in range(world)], plan


def test_one_source_mixture_is_data_dir():
    for n, batch, world, seed in [(37, 4, 1, 5), (48, 2, 3, 0)]:
        ranks, plan = picks_of([n], [1.0], batch, world, seed)
        for micro in range(3 * plan.micro_per_epoch):
            epoch, index = divmod(micro, plan.micro_per_epoch)
            for rank, batches in enumerate(ranks):
                expected = micro_batch_indices(n, epoch, index, seed, batch, rank, world)
                assert [k for _, k in batches.picks(micro)] == expected


def test_global_batch_does_not_depend_on_the_split():
    sizes, ratios, global_batch = [30, 7, 100], [2.0, 5.0, 1.0], 12
    one, plan = picks_of(sizes, ratios, global_batch, 1)
    for world in (2, 3, 4, 6):
        ranks, _ = picks_of(sizes, ratios, global_batch // world, world)
        for micro in range(2 * plan.micro_per_epoch + 3):
            assert [p for batches in ranks for p in batches.picks(micro)] == one[0].picks(micro), (world, micro)


class _Picks(torch.utils.data.Dataset):
    def __init__(self, batches):
        self.batches = batches

    def __getitem__(self, micro):
        return self.batches.picks(micro)


def test_a_micro_batch_is_a_pure_function_of_its_index():
    sizes, ratios = [30, 7, 100], [2.0, 5.0, 1.0]
    (batches,), plan = picks_of(sizes, ratios, 4, 1)
    micros = range(3 * plan.micro_per_epoch)
    forward = [batches.picks(m) for m in micros]
    mixture._slot_sources.cache_clear()
    mixture._source_order.cache_clear()
    assert [batches.picks(m) for m in reversed(micros)] == forward[::-1]  # any order: a resume, a worker
    loader = torch.utils.data.DataLoader(_Picks(batches), sampler=range(5, len(forward)), batch_size=None,
                                         num_workers=2, multiprocessing_context="fork",
                                         collate_fn=lambda x: x)
    assert [[tuple(p) for p in item] for item in loader] == forward[5:]


def test_realised_shares_match_the_ratios():
    """Each slot comes from source i with probability q_i / L (q_i / L within 1 / L of the ratio's
    share): over any window the count is within 4 binomial standard errors of its expectation (the
    draw is without replacement, whose variance is smaller still), and a whole epoch holds exactly q_i."""
    sizes, ratios, batch = [50, 400, 7], [3.0, 1.0, 2.0], 8
    quota = quotas(sizes, ratios)
    total = sum(quota)
    assert total == sum(sizes)
    for q, r in zip(quota, ratios):
        assert abs(q / total - r / sum(ratios)) < 1 / total
    (batches,), plan = picks_of(sizes, ratios, batch, 1, seed=7, epochs=4)
    window_sizes = (batch * 5, batch * 20, batch * plan.micro_per_epoch)
    for epoch in range(4):
        micros = range(epoch * plan.micro_per_epoch, (epoch + 1) * plan.micro_per_epoch)
        drawn = [source for m in micros for source, _ in batches.picks(m)]
        for width in window_sizes:
            for start in range(0, len(drawn) - width + 1, width):
                window = drawn[start:start + width]
                for i, q in enumerate(quota):
                    p = q / total
                    error = math.sqrt(width * p * (1 - p))
                    assert abs(window.count(i) - width * p) <= 4 * error, (epoch, width, start, i)
        every_slot = [s for s, _ in mixture_picks(sizes, quota, 7, epoch, 0, total)]
        assert [every_slot.count(i) for i in range(len(quota))] == quota


def test_small_sources_cycle_and_large_ones_continue():
    """Read in slot order over epochs, each source's stream is a sequence of permutations of its
    samples: a small source is re-permuted on every pass, and a large one sees every sample once
    before any twice (the next epoch continues where the last stopped)."""
    sizes, ratios = [5, 200, 40], [4.0, 1.0, 2.0]
    quota = quotas(sizes, ratios)
    streams = {i: [] for i in range(3)}
    for epoch in range(12):  # source 1 reads 35 of its 200 per epoch: two whole passes
        for source, k in mixture_picks(sizes, quota, 3, epoch, 0, sum(quota)):
            streams[source].append(k)
    assert quota[0] > sizes[0] and quota[1] < sizes[1]  # cycled and sub-sampled
    for i, n in enumerate(sizes):
        stream = streams[i]
        passes = [stream[j:j + n] for j in range(0, len(stream) - n + 1, n)]
        assert len(passes) >= 2
        assert all(sorted(p) == list(range(n)) for p in passes), i
        assert passes[0] != passes[1]  # a fresh order on each pass


# --- a real mixture run: a VQA source and a report source whose ids and image paths collide ---


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    from pefomed.data.synthetic import write_bright_spot_dataset
    from pefomed.records import Sample, read_split, write_split

    root = tmp_path_factory.mktemp("mix")
    spot = write_bright_spot_dataset(root / "spot", n_train=24, n_test=6)
    write_split(spot, "val", read_split(spot, "test"))
    # same ids and the same relative image paths as `spot`, different pixels (another seed)
    reports = write_bright_spot_dataset(root / "reports", n_train=8, n_test=4, seed=1)
    for split, out in (("train", "train"), ("test", "val")):
        write_split(reports, out, [Sample(id=s.id, task="report", images=s.images,
                                          answer="a bright spot is seen." if s.answer == "yes" else "no finding.")
                                   for s in read_split(reports, split)])
    return spot, reports


def mix_value(spot, reports) -> str:
    return f"data.mix=[{{dir: {spot}, ratio: 3}}, {{dir: {reports}, ratio: 1, name: iu}}]"


RUN = ["train.max_steps=6", "train.batch_size=4", "train.save_every=2", "train.keep_checkpoints=3",
       "train.eval_every=3", "train.eval_max_samples=4", "train.lr=3e-3", "method.dropout=0.1", "train.seed=1"]


@pytest.fixture(scope="module")
def mix_run(tmp_path_factory, sources):
    run = tmp_path_factory.mktemp("mix-run") / "run"
    assert main(["train", "tiny-demo", "--out", str(run), mix_value(*sources), *RUN]) == 0
    return run


def rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


@pytest.mark.slow
def test_each_source_is_evaluated_with_its_own_metric(mix_run):
    evals = rows(mix_run / "eval_log.jsonl")
    assert [r["step"] for r in evals] == [3, 6]
    for row in evals:
        assert row["metric"] == "mixture_mean" and set(row["sources"]) == {"spot", "iu"}
        spot, iu = row["sources"]["spot"], row["sources"]["iu"]
        assert (spot["metric"], iu["metric"], spot["samples"], iu["samples"]) == ("vqa_accuracy", "bleu4_cider", 4, 4)
        assert spot["scaled"] == spot["value"] and iu["scaled"] == pytest.approx(iu["value"] / 11)
        assert row["value"] == pytest.approx((spot["scaled"] + iu["scaled"]) / 2)
        assert all(0 <= entry["scaled"] <= 1 for entry in row["sources"].values())
    best = json.loads((mix_run / "best.json").read_text())
    assert best["value"] == max(r["value"] for r in evals)
    assert best["step"] == min(r["step"] for r in evals if r["value"] == best["value"])


@pytest.mark.slow
def test_batches_name_their_source_and_read_its_images(mix_run, sources):
    from transformers import AutoProcessor

    from pefomed.data.collate import Collator
    from pefomed.recipe import load_recipe
    from pefomed.records import read_split
    from pefomed.train.plan import Plan, check_data

    recipe = load_recipe(mix_run / "recipe.yaml")
    assert [m.dir for m in recipe.data.mix] == [str(s.resolve()) for s in sources]  # absolute in RUN_DIR
    processor = AutoProcessor.from_pretrained(mix_run / "processor")
    plan = Plan.make(recipe, check_data(recipe), world=1)
    batches = plan.training_batches(processor, recipe, 0, 1, has_vision=True)
    own = {name: (Collator(processor, recipe.data, folder, train=True), {s.id: s for s in read_split(folder, "train")})
           for name, folder in zip(("spot", "iu"), sources)}
    seen = set()
    for micro in range(plan.epochs.micro_per_epoch):
        ids, batch = batches[micro]
        for row, key in enumerate(ids):
            name, sample_id = key.split(":", 1)
            collator, by_id = own[name]
            expected = collator.encode(by_id[sample_id])
            assert torch.equal(batch["pixel_values"][row], expected["pixel_values"][0]), key
            other = own["iu" if name == "spot" else "spot"]
            if sample_id in other[1]:  # the same path in the other DATA_DIR holds another image
                assert not torch.equal(batch["pixel_values"][row], other[0].encode(other[1][sample_id])["pixel_values"][0])
            seen.add(name)
    assert seen == {"spot", "iu"}
    loader = torch.utils.data.DataLoader(batches, sampler=range(3), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    for micro, (ids, batch) in enumerate(loader):
        direct_ids, direct = batches[micro]
        assert ids == direct_ids and batch.keys() == direct.keys()
        assert all(torch.equal(batch[k], direct[k]) for k in batch)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_mixture_run_equals_an_uninterrupted_one(mix_run, tmp_path, workers):
    """The run is taken back to its step-4 checkpoint (what a kill after step 4 leaves: the logs
    up to then, best.json of step 3) and resumed, in a fresh process state (new caches), with or
    without DataLoader workers."""
    resumed = tmp_path / "resumed"
    shutil.copytree(mix_run, resumed)
    (resumed / "checkpoints" / "latest").write_text("step-0000004")
    for leftover in ("adapter", "best", "last.json"):
        path = resumed / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    evals = rows(mix_run / "eval_log.jsonl")
    (resumed / "best.json").write_text(json.dumps(evals[0]))
    recipe = (resumed / "recipe.yaml").read_text()
    assert "num_workers: 0" in recipe
    (resumed / "recipe.yaml").write_text(recipe.replace("num_workers: 0", f"num_workers: {workers}"))

    assert main(["train", "--resume", str(resumed)]) == 0
    a = load_file(mix_run / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)
    kept = ("step", "epoch", "loss", "lr")
    assert [{k: r[k] for k in kept} for r in rows(resumed / "train_log.jsonl")] == \
        [{k: r[k] for k in kept} for r in rows(mix_run / "train_log.jsonl")]
    assert rows(resumed / "eval_log.jsonl") == evals


# --- mistakes: one message through the installed command, exit 2 ---


def cli(*args, cwd):
    cmd = [PEFOMED, *args] if PEFOMED else [sys.executable, "-m", "pefomed.cli.app", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


# two through the installed command (a subprocess costs ~10 s of imports here), two in-process
@pytest.mark.parametrize("case, installed", [("data-and-mix", True), ("not-a-data-dir", True),
                                             ("dir-and-mix", False), ("same-name", False)])
def test_mixture_mistakes_are_one_message(case, installed, sources, tmp_path, capsys):
    spot, reports = sources
    args = {
        "data-and-mix": ["--data", str(spot), mix_value(spot, reports)],
        "dir-and-mix": [f"data.dir={spot}", mix_value(spot, reports)],
        "not-a-data-dir": [f"data.mix=[{{dir: {spot}, ratio: 1}}, {{dir: {tmp_path}, ratio: 1}}]"],
        "same-name": [f"data.mix=[{{dir: {spot}, ratio: 1, name: a}}, {{dir: {reports}, ratio: 1, name: a}}]"],
    }[case]
    says = {"data-and-mix": ("--data", "data.mix"), "dir-and-mix": ("data.dir", "data.mix"),
            "not-a-data-dir": ("data.mix[1].dir", str(tmp_path)), "same-name": ("data.mix[1].name", "'a'")}[case]
    argv = ["train", "tiny-demo", "--out", str(tmp_path / "run"), *args]
    if installed:
        result = cli(*argv, cwd=tmp_path)
        code, out, err = result.returncode, result.stdout, result.stderr
    else:
        code = main(argv)
        out, err = capsys.readouterr()
    assert code == 2, err[-2000:]
    assert "Traceback" not in err + out
    lines = [line for line in err.splitlines() if line.strip() and not line.lstrip().startswith("hint:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert all(word in lines[0] for word in says), lines
    assert not (tmp_path / "run").exists()  # refused before RUN_DIR is made
