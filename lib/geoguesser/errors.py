"""Errors a user can cause (bad data, bad config), as opposed to bugs.

The CLI prints these as one line and exits with status 2; anything else is a bug
and keeps its traceback. In a notebook (JupyterLab, or papermill's record of a headless
run) IPython shows `_render_traceback_` instead of a traceback, so a typo in an override is
the same one line there: `UserError: grid.cellkm: unknown setting; did you mean ...?`.
"""


class UserError(Exception):
    """Bad input from the user: the message names what is wrong and where."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook: these lines, no traceback
        return [f"UserError: {self}"]


def printable(text: object) -> str:
    """`text` as a line any terminal, log or UTF-8 file takes, for names from the file system.

    Python keeps the bytes of a file name that are not UTF-8 as lone surrogates (os.fsdecode),
    which print and encode nowhere: they are shown as `\\xNN`, the byte they stand for.
    """
    text = str(text)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def is_utf8_name(name: str) -> bool:
    """Whether a file name is valid UTF-8 (holds no surrogate standing for a stray byte)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
