"""Errors the CLI reports as one line with exit code 2 and no traceback."""


class UserError(Exception):
    """Bad input from the user: the message names the file or option and the problem."""
