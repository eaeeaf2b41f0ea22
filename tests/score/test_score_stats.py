"""Statistics of `pefomed score`: cluster bootstrap, proportion intervals, seeds x test resampling,
the study-runner comparison and the Holm correction."""

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from pefomed.score.run import score_files
from pefomed.score.stats import (Bootstrap, clopper_pearson, design_effect, holm, mean_stats, paired_compare,
                                 paired_difference, wilson)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _clustered_rows(n_images=30, per_image=5, seed=0):
    """Every question about one image is answered right or wrong together: the strongest clustering."""
    rng = np.random.default_rng(seed)
    rows = []
    for img in range(n_images):
        right = rng.random() < 0.5
        for q in range(per_image):
            rows.append({"id": f"i{img}q{q}", "images": [f"img{img}.png", "extra.png"], "question": "?",
                         "reference": "yes", "prediction": "yes" if right else "no", "answer_type": "closed",
                         "task": "vqa"})
    return rows


def test_singleton_clusters_give_bit_identical_weights():
    n, b, seed = 57, 200, 3
    plain = Bootstrap.make(n, b, seed)
    clustered = Bootstrap.make(n, b, seed, clusters=[f"img{i}.png" for i in range(n)], unit="image")
    assert np.array_equal(plain.weights, clustered.weights)
    # and both are the historical stream: n multinomial draws from default_rng(seed)
    raw = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=b).astype(np.float64)
    assert np.array_equal(plain.weights, raw)


def test_cluster_members_share_their_cluster_draw_count():
    keys = ["a", "a", "b", "c", "c", "c", None]
    boot = Bootstrap.make(len(keys), 300, 1, clusters=keys, unit="image")
    w = boot.weights
    assert boot.n_clusters == 4
    assert np.array_equal(w[:, 0], w[:, 1]) and np.array_equal(w[:, 3], w[:, 5])
    # each resample draws 4 clusters: the weights of one member per cluster sum to 4
    assert np.all(w[:, [0, 2, 3, 6]].sum(axis=1) == 4)


def test_clustering_widens_the_interval_on_repeated_images(tmp_path):
    path = _write(tmp_path / "p.jsonl", _clustered_rows())
    by_image = score_files([path], bootstrap=500, seed=0)
    by_sample = score_files([path], bootstrap=500, seed=0, resample_unit="sample")
    img, smp = by_image["vqa"]["overall"], by_sample["vqa"]["overall"]
    assert img["value"] == smp["value"]

    def width(e, lo="ci_low", hi="ci_high"):
        return e[hi] - e[lo]
    # percentile bootstrap: 30 images, not 150 independent questions -> about sqrt(5) wider
    assert width(img, "bootstrap_ci_low", "bootstrap_ci_high") > 1.7 * width(smp, "bootstrap_ci_low", "bootstrap_ci_high")
    # the Wilson interval follows at the effective n = n / design effect (= 150 / 5)
    assert img["n_effective"] == pytest.approx(30)
    assert width(img) > 1.7 * width(smp)
    assert img["interval"] == smp["interval"] == "wilson"
    res = by_image["settings"]["resampling"]
    assert res["unit"] == "image" and res["clusters"] == 30 and res["largest_cluster"] == 5
    assert "image clusters" in by_image["settings"]["intervals"]["proportions"]


def test_one_question_per_image_changes_nothing(tmp_path):
    rows = _clustered_rows(n_images=60, per_image=1)
    path = _write(tmp_path / "p.jsonl", rows)
    by_image = score_files([path], bootstrap=300, seed=2)
    by_sample = score_files([path], bootstrap=300, seed=2, resample_unit="sample")
    assert by_image["vqa"]["overall"] == by_sample["vqa"]["overall"]


def test_study_unit_uses_meta_and_falls_back_to_the_image(tmp_path):
    rows = _clustered_rows(n_images=6, per_image=2)
    for i, r in enumerate(rows):
        if i < 8:
            r["meta"] = {"study_id": f"s{i // 4}"}  # rows 0..7: two studies of 4 rows (2 images each)
    path = _write(tmp_path / "p.jsonl", rows)
    res = score_files([path], bootstrap=10, resample_unit="study")["settings"]["resampling"]
    assert res["clusters"] == 2 + 2 and res["rows_by_key"] == {"study_id": 8, "image": 4}


def test_design_effect():
    hits = np.repeat([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], 5)
    clusters = np.repeat(np.arange(6), 5)
    assert design_effect(hits, np.ones(30, bool), clusters) == pytest.approx(5.0)
    assert design_effect(hits, np.ones(30, bool), np.arange(30)) == 1.0
    assert design_effect(hits, np.ones(30, bool), None) == 1.0


@pytest.mark.parametrize("k,n", [(0, 130), (130, 130), (7, 20), (1, 3)])
def test_proportion_intervals_match_scipy(k, n):
    ref = binomtest(k, n)
    w = ref.proportion_ci(0.95, method="wilson")
    assert wilson(k, n, 0.05) == pytest.approx((w.low, w.high), abs=1e-12)
    cp = ref.proportion_ci(0.9, method="exact")
    assert clopper_pearson(k, n, 0.1) == pytest.approx((cp.low, cp.high), abs=1e-12)


def test_all_wrong_group_has_a_positive_width_interval(tmp_path):
    rows = [{"id": f"q{i}", "images": [f"i{i}.png"], "question": "what?", "reference": "liver", "prediction": "kidney",
             "answer_type": "open", "task": "vqa"} for i in range(130)]
    m = score_files([_write(tmp_path / "p.jsonl", rows)], bootstrap=200)
    open_ = m["vqa"]["open"]
    assert open_["value"] == 0.0 and open_["bootstrap_ci_high"] == 0.0
    assert open_["ci_low"] == 0.0 and open_["ci_high"] == pytest.approx(0.0287, abs=1e-4)
    assert open_["interval"] == "wilson"
    cp = score_files([tmp_path / "p.jsonl"], bootstrap=0, proportion_interval="clopper-pearson")["vqa"]["open"]
    assert cp["interval"] == "clopper-pearson" and cp["ci_high"] == pytest.approx(0.02798, abs=1e-5)
    boot = score_files([tmp_path / "p.jsonl"], bootstrap=50, proportion_interval="bootstrap")["vqa"]["open"]
    assert boot["interval"] == "percentile bootstrap" and boot["ci_high"] == 0.0


def test_seed_variance_enters_the_paired_interval():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    boot = Bootstrap.make(200, 400, seed=1)
    a0, fn = mean_stats(base + 0.1)
    a1, _ = mean_stats(base - 0.1)
    b, _ = mean_stats(base)
    one = paired_difference([a0, a0], [b], fn, boot)
    single = paired_difference(a0, b, fn, boot)
    # identical seeds: exactly the one-seed bootstrap
    assert (one["ci_low"], one["ci_high"], one["value"]) == (single["ci_low"], single["ci_high"], single["value"])
    two = paired_difference([a0, a1], [b], fn, boot)
    # the seed mean equals B on every id, but drawing seeds moves the mean by +-0.1
    assert two["value"] == pytest.approx(0.0, abs=1e-12)
    assert two["ci_low"] == pytest.approx(-0.1) and two["ci_high"] == pytest.approx(0.1)
    assert two["verdict"] == "tie"


def test_paired_compare_for_a_study_runner():
    rng = np.random.default_rng(4)
    a = (rng.random(300) < 0.8).astype(float)
    b = (rng.random(300) < 0.5).astype(float)
    res = paired_compare(a, b, resamples=300, seed=0)
    assert res["test"] == "exact McNemar" and res["verdict"] == "win"
    assert res["difference"] == pytest.approx(a.mean() - b.mean()) and res["ci_low"] > 0
    assert res["p_value"] == res["mcnemar"]["p_value"]
    # questions sharing images: McNemar's independence fails, the cluster bootstrap decides
    clustered = paired_compare(a, b, clusters=[i // 3 for i in range(300)], resamples=300, seed=0)
    assert clustered["test"] == "paired bootstrap over clusters" and clustered["n_clusters"] == 100
    assert "not used" in clustered["mcnemar"]["note"]
    # continuous scores: the paired bootstrap; several seeds per side: seeds are resampled too
    cont = paired_compare(np.vstack([a * 0.9, a * 0.8]), b * 0.5, resamples=200)
    assert cont["test"] == "paired bootstrap and seeds" and cont["verdict"] == "win"
    # no resamples and no McNemar: no verdict at all
    none = paired_compare(a * 0.5, b * 0.5, resamples=0)
    assert none["verdict"] is None and none["test"] is None and "no bootstrap" in none["no_verdict"]


def test_holm_against_hand_computed_values():
    # sorted: .005*4 = .02, .01*3 = .03, .03*2 = .06, .04*1 = .04 -> running max .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # missing p-values do not count in m
    assert holm([0.2, None, 0.6]) == [pytest.approx(0.4), None, pytest.approx(0.6)]
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []
