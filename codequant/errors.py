"""One error type for everything a user can get wrong.

The CLI prints a `CodequantError` as a single `error: ...` line (exit code 2) instead of a traceback, so every
module raises it for bad input: unknown names, missing files, bad specs, missing system packages.
"""


class CodequantError(Exception):
    """A user-facing error: its message is the whole story, on one line, ideally with how to fix it."""
