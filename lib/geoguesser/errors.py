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
