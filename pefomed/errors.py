"""The one exception type for user mistakes.

Anything the user can fix (a missing file, a bad recipe key, a malformed line) raises
`UserError` with a message that names the file, line, key or id. The CLI prints that message
and exits non-zero without a traceback; every other exception is a bug and keeps its traceback.

Library code names settings by their key (`infer.num_beams`, `max_image_pixels`), never by a
command-line flag: the same check runs under `pefomed infer`, under training's evaluation (where
the setting is a recipe key) and from Python. A key the message names is listed in `keys`; cli/
turns each into the flag of the command the user ran, where that command has one
(`UserError.naming_flags`), and leaves it a recipe key otherwise.
"""

from __future__ import annotations

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
                text = text.replace(key, flag)
        return text
