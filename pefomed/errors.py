"""The one exception type for user mistakes.

Anything the user can fix (a missing file, a bad recipe key, a malformed line) raises
`UserError` with a message that names the file, line, key or id. The CLI prints that message
and exits non-zero without a traceback; every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one clear message."""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:  # the message, plus a hint line when there is one
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base
