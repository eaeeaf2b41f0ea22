"""The one exception type for user mistakes.

Anything the user can fix (a missing file, a bad recipe key, a malformed line) raises
`UserError` with a message that names the file, line, key or id. The CLI prints that message
and exits non-zero without a traceback; every other exception is a bug and keeps its traceback.

Library code names settings by their key, never by a command-line flag: the same check runs under
`pefomed infer`, under training's evaluation (where the setting is a recipe key) and from Python.
Two spellings of a key in a message:

- a recipe key (dotted, `infer.num_beams`) or an option key with an underscore (`max_image_pixels`),
  listed in `keys`;
- any option key in backticks (`` `images` ``, `` `series_frames` ``): a single word such as
  "images" is also an ordinary word, so only the backticked form is a key (no `keys` needed).

cli/ turns each into the flag of the command the user ran, where that command has one
(`UserError.naming_flags`), and leaves it a key otherwise. A message that tells the user to run
*another* command spells it with pefomed.options.command_line, which reads that command's declared
options, so a renamed flag changes the advice too.
"""

from __future__ import annotations

import re

from typing import Iterable, Mapping


class UserError(Exception):
    """A problem with the user's input, reported as one clear message."""

    def __init__(self, message: str, *, hint: str | None = None, keys: Iterable[str] = ()):
        super().__init__(message)
        self.hint = hint
        self.keys = tuple(keys)

    def __str__(self) -> str:  # the message, plus a hint line when there is one
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base

    def naming_flags(self, flags: Mapping[str, str]) -> str:
        """The message with each of its `keys` spelled as the flag `flags` maps its last part to
        (`infer.num_beams` -> `--num-beams` when flags has "num_beams"); keys without a flag stay."""
        text = str(self)
        # longest first: "infer.num_beams" is replaced before a key that is a suffix of it
        for key in sorted(self.keys, key=len, reverse=True):
            flag = flags.get(key.rsplit(".", 1)[-1])
            if flag:
                # whole keys only: "seed" inside "limit_seed" or "shots_seed" is another key
                text = re.sub(rf"(?<![\w.`-]){re.escape(key)}(?![\w`-])", flag, text)
        # backticked option keys: `images` -> --images; an unknown one stays a key, as typed in Python
        return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: flags.get(m.group(1), m.group(0)), text)
