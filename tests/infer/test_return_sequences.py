"""infer.num_return_sequences (`--num-return-sequences`): every answer is kept in `predictions`, best
first, `prediction` is the first (the best beam: the answer of the same beam search returning one),
ranked closed questions list their candidates by likelihood, and `pefomed score` reads
`prediction` as before."""

from __future__ import annotations

import json

from PIL import Image

from pefomed.cli.app import main
from pefomed.score.rows import read_rows


def rows(path):
    return [json.loads(line) for line in open(path)]


def test_beams_keep_every_answer_and_the_first_is_the_one_beam_answer(tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (20 + 3 * i, 24), (40 * i, 120, 30)).save(folder / f"x{i}.png")
    common = ["--images", str(folder), "--question", "Is this normal?", "--max-new-tokens", "4", "--num-beams", "3"]
    assert main(["infer", "tiny-demo", "--out", str(tmp_path / "one.jsonl"), *common]) == 0
    assert main(["infer", "tiny-demo", "--out", str(tmp_path / "three.jsonl"), *common,
                 "--num-return-sequences", "3"]) == 0
    one, three = rows(tmp_path / "one.jsonl"), rows(tmp_path / "three.jsonl")
    assert all("predictions" not in row for row in one)  # one answer: the file is as it always was
    assert [len(r["predictions"]) for r in three] == [3] * 4
    assert [r["prediction"] for r in three] == [r["predictions"][0] for r in three] == [r["prediction"] for r in one]
    generation = json.loads((tmp_path / "three.settings.json").read_text())["generation"]
    assert generation["num_return_sequences"] == 3 and generation["num_beams"] == 3

    for extra, says in ((["--num-return-sequences", "4"], "--num-return-sequences=4 is more than "
                                                          "--num-beams=3"),  # the keys, as the flags typed
                        (["--num-beams", "1", "--num-return-sequences", "2"], "needs beam search or sampling"),
                        (["--num-return-sequences", "0"], "--num-return-sequences must be at least 1")):
        capsys.readouterr()
        assert main(["infer", "tiny-demo", "--out", str(tmp_path / "bad.jsonl"), *common, *extra]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (extra, err)


def test_ranked_closed_questions_list_their_candidates_and_score_reads_the_first(demo_data, tmp_path):
    out = tmp_path / "pred.jsonl"
    assert main(["infer", "tiny-demo", "--data", str(demo_data), "--out", str(out), "--limit", "8",
                 "--closed-answer", "rank", "--max-new-tokens", "2", "--temperature", "0.7", "--seed", "1",
                 "--num-return-sequences", "2"]) == 0
    written = rows(out)
    ranked = set(json.loads((tmp_path / "pred.settings.json").read_text())["prompt"]["ranked"])
    assert ranked and len(ranked) < len(written)  # both kinds in the sample
    for row in written:
        assert row["prediction"] == row["predictions"][0] and len(row["predictions"]) == 2
        if row["id"] in ranked:
            assert sorted(row["predictions"]) == ["no", "yes"]
    scored = read_rows(out)
    assert [r.prediction for r in scored] == [r["prediction"] for r in written]
