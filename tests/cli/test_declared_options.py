"""Every command's options are declared once (pefomed.options): the CLI's parameters are generated
from the declaration, every argv `pefomed study` builds for a cell parses back through the CLI to
the same options, and a flag renamed in the declaration changes the CLI, the study's commands and
the messages together."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import MISSING
from pathlib import Path

import pytest
import typer

from pefomed.options import COMMANDS, command_class, command_line

PEFOMED = shutil.which("pefomed")


def _click_command(name: str):
    from pefomed.cli.app import app

    return typer.main.get_command(app).commands[name]


def _parse(argv: list[str]):
    """argv (["infer", SOURCE, "--out", ...]) through the real CLI parser, back to the Options."""
    from pefomed.cli.declared import values_given

    command = _click_command(argv[0])
    ctx = command.make_context(argv[0], list(argv[1:]))
    cls = command_class(argv[0])
    return cls.from_flat(values_given(cls, ctx.params))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_exactly_its_declared_options(name):
    cls = command_class(name)
    command = _click_command(name)
    params = {p.name: p for p in command.params if p.name != "help"}
    declared = {d.name: d for d in cls.flat_fields()}
    assert set(params) == set(declared), name
    for key, d in declared.items():
        param = params[key]
        if d.meta["positional"]:
            assert param.param_type_name == "argument", key
            continue
        assert d.flag in param.opts, (key, param.opts)
        assert param.required == (d.default is MISSING), key
        if d.default is not MISSING and d.default is not None and not d.repeated:
            assert param.default == d.default, key


def _study(tmp_path: Path, demo_data: Path) -> Path:
    study = {
        "name": "argv",
        "models": [{"name": "tiny", "source": "tiny-demo"}],
        "data": [{"name": "d", "dir": str(demo_data), "val_split": "train", "test_split": "test"}],
        "seeds": [0, 3],
        "infer": {"batch_size": 4, "max_new_tokens": 6},
        "selection": {"limit": 5, "seed": 2},
        "score": {"bootstrap": 50, "seed": 1, "alpha": 0.1},
        "adaptations": [
            {"name": "zs", "kind": "zero-shot", "closed_answer": "rank",
             "prompts": [{"template": "{question} Answer briefly."}, {"template": "Q: {question}",
                                                                       "system_prompt": "You read scans."}]},
            {"name": "fs", "kind": "few-shot", "shots": 2},
            {"name": "blind", "kind": "blind", "of": "zs"},
            {"name": "shuf", "kind": "ablation", "of": "fs", "image": "shuffled"},
            {"name": "ft", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"],
             "overrides": ["train.epochs=1"]},
        ],
    }
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(study))  # JSON is YAML
    return path


def test_every_study_command_parses_back_to_the_same_options(tmp_path, demo_data):
    from pefomed.study.plan import plan_study
    from pefomed.study.spec import load_study

    path = _study(tmp_path, demo_data)
    selections, cells = plan_study(*load_study(path))
    steps = [step for unit in selections + cells for step in unit.steps]
    assert {s.argv[0] for s in steps} == {"train", "infer", "score"}
    seen = {}
    for step in steps:
        argv = [a for a in step.argv if not a.startswith("<the prompt chosen")]  # a pending cell's placeholder
        options = _parse(argv)
        assert [argv[0], *options.to_argv()] == argv, argv  # a fixed point: nothing lost, nothing added
        seen.setdefault(argv[0], []).append(options)
    infer = [o.options for o in seen["infer"]]
    # what the study file says reached the options the command will run with
    assert all(o.batch_size == 4 and o.max_new_tokens == 6 for o in infer)
    assert {o.prompting.shots_seed for o in infer if o.prompting.shots == 2} == {0, 3}  # a draw per seed
    assert any(o.prompting.closed_answer == "rank" and o.prompting.template == "Q: {question}"
               and o.prompting.system_prompt == "You read scans." and o.limit == 5 and o.limit_seed == 2
               for o in infer)
    assert any(o.prompting.blind for o in infer)
    assert {o.prompting.image_ablation_seed for o in infer if o.prompting.image_ablation == "shuffled"} == {0, 3}
    cell_scores = [o.settings for o in seen["score"] if o.settings.bootstrap == 50]
    assert cell_scores and all(s.seed == 1 and s.alpha == 0.1 for s in cell_scores)
    assert any(o.settings.bootstrap == 0 for o in seen["score"])  # selections score values only
    train = seen["train"][0]
    assert train.recipe == "tiny-demo" and "train.epochs=1" in train.overrides and str(train.out) == "run"


def test_command_line_spells_the_declared_flags():
    assert command_line("train", resume="RUN_DIR") == "`pefomed train --resume RUN_DIR`"
    assert command_line("prepare", "SOURCE", overwrite=True) == "`pefomed prepare SOURCE --overwrite`"
    assert command_line("infer", num_workers=2) == "`pefomed infer --workers 2`"  # the flag, not the key


RENAME = textwrap.dedent("""
    import dataclasses, json, sys, types
    from pefomed.options.infer import PromptOptions
    # rename one flag in the declaration, and nowhere else: --shots becomes --examples
    f = PromptOptions.__dataclass_fields__["shots"]
    f.metadata = types.MappingProxyType({**f.metadata, "flag": "examples"})
    from pefomed.cli.app import main
    from pefomed.study.plan import plan_study
    from pefomed.study.spec import load_study
    from pathlib import Path
    path = Path(sys.argv[1])
    selections, cells = plan_study(*load_study(path))
    argvs = [s.argv for u in selections + cells for s in u.steps if s.argv[0] == "infer"]
    print(json.dumps(argvs))
    sys.exit(main(["infer", "tiny-demo", "--data", sys.argv[2], "--out", sys.argv[3], *sys.argv[4:]]))
""")


def test_a_flag_renamed_in_the_declaration_changes_the_cli_the_study_and_the_messages(tmp_path, demo_data):
    path = _study(tmp_path, demo_data)
    run = lambda *extra: subprocess.run([sys.executable, "-c", RENAME, str(path), str(demo_data),
                                         str(tmp_path / "p.jsonl"), *extra], capture_output=True, text=True,
                                        timeout=300, env={**os.environ, "COLUMNS": "300"})
    bad = run("--examples", "-1")  # the renamed flag parses, and its range error names it
    argvs = json.loads(bad.stdout.splitlines()[0])
    few_shot = [a for a in argvs if "--examples" in a]
    assert few_shot and not any("--shots" in a for a in argvs)
    assert bad.returncode == 2 and "--examples must be at least 0" in bad.stderr, bad.stderr
    old = run("--shots", "1")
    assert old.returncode == 2 and "No such option: --shots" in old.stderr, old.stderr


def test_the_cli_reference_is_generated_from_the_declarations():
    root = Path(__file__).resolve().parents[2]
    check = subprocess.run([sys.executable, str(root / "tools" / "cli_reference.py"), "--check"], capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, "docs/cli.md differs from pefomed/options: run python tools/cli_reference.py"
    text = (root / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in COMMANDS:  # every flag of every command is in the reference
        for d in command_class(name).flat_fields():
            assert f"`{d.name.upper() if d.meta['positional'] else d.flag}" in text, (name, d.name)
