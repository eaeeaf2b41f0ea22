"""The distribution installs what it should, under the names it should."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "pefomed").rglob("__init__.py")}
    assert found - listed == set(), f"package folders missing from pyproject's packages list: {found - listed}"
    assert {"pefomed.cli", "pefomed.recipes"} <= listed


def test_cli_installs_under_the_pefomed_namespace_not_as_top_level_cli(tmp_path):
    import subprocess
    import sys

    import pefomed.cli.app as app

    assert Path(app.__file__).resolve().parent == REPO / "cli"
    # outside the checkout (no cwd on sys.path), `import cli` must not find our folder
    code = "import importlib.util as u; s = u.find_spec('cli'); print(s.origin if s else None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert str(REPO / "cli") not in out.stdout


def test_builtin_recipes_and_deepspeed_presets_ship_as_package_data():
    from importlib import resources

    root = resources.files("pefomed.recipes")
    assert (root / "tiny-demo.yaml").is_file()
    for preset in ("zero0", "zero2", "zero3", "zero3_offload"):
        assert (root / "deepspeed" / f"{preset}.json").is_file()


def test_library_import_does_not_pull_torch():
    import subprocess
    import sys

    code = "import sys, pefomed, pefomed.records, pefomed.recipe, pefomed.io; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
