"""Print the README's set-up commands, one per line, in order: the single source of what a new user
runs and of what CI (.ci/run) runs.

They are the fenced `bash` blocks of the README section "Set up on a fresh machine"; each block
holds exactly one command line. Standard library only: CI calls this before anything is installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SECTION = "## Set up on a fresh machine"


def setup_commands(readme: str) -> list[str]:
    if SECTION not in readme:
        raise SystemExit(f"README.md has no section {SECTION!r}")
    body = readme.split(SECTION, 1)[1]
    body = re.split(r"^## ", body, maxsplit=1, flags=re.M)[0]
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", body, flags=re.M | re.S):
        lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if len(lines) != 1:
            raise SystemExit(f"README.md, {SECTION!r}: each bash block must hold one command line, got {lines}")
        commands.append(lines[0].strip())
    return commands


if __name__ == "__main__":
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "README.md")
    print("\n".join(setup_commands(readme.read_text())))
