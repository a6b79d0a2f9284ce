"""Errors the command line reports as one line (exit status 2), shared by its commands."""


class UsageError(Exception):
    """A flag, argument or input file that cannot be used; the message says which."""
