"""RUN_DIR is protected once it holds something worth keeping, and a bad recipe fails before it
is created."""

import pytest

from pefomed.cli.app import main


@pytest.fixture(scope="module")
def spot_data(tmp_path_factory):
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("spot") / "data", n_train=8, n_test=2)


@pytest.mark.parametrize("overrides, message", [
    (["model.kind=hf"], "'model.name_or_path' is required"),
    (["model.kind=hf", "model.name_or_path=/no/such/model"], "is not a folder"),
    (["model.kind=composed"], "needs model.composed.vision_name_or_path and model.composed.llm_name_or_path"),
])
def test_bad_model_paths_fail_before_the_run_folder_exists(tmp_path, spot_data, capsys, overrides, message):
    run = tmp_path / "run"
    assert main(["train", "tiny-demo", "--data", str(spot_data), "--out", str(run), *overrides]) == 2
    assert message in capsys.readouterr().err
    assert not run.exists()


def test_a_finished_run_is_never_overwritten_but_a_failed_start_can_be_retried(tmp_path, spot_data, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("model:\n  kind: tiny\n")  # what a run that died at start leaves
    args = ["train", "tiny-demo", "--data", str(spot_data), "--out", str(run), "train.max_steps=1",
            "train.batch_size=4"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["train"], "missing RECIPE"),
    (["train", "train.lr=1e-4"], "looks like an override; the recipe file comes first"),
    (["train", "tiny-demo", "--resume", "{tmp}"], "do not pass a recipe or overrides"),
])
def test_command_line_mistakes_are_named(tmp_path, capsys, args, message):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err.replace("\n", " ") and "Traceback" not in err
