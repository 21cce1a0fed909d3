"""Errors a user can cause (bad data, bad config), as opposed to bugs.

The CLI prints these as one line and exits with status 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: the message names what is wrong and where."""
