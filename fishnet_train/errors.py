"""Errors that mean the user asked for something that cannot work, not a bug.

The command-line entry points print such an error as one line and exit with status 2.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """A bad path, config value or file: the message says what is wrong and how to fix it."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model."""


def user_message(error: UserError) -> str:
    """The error's own line, also when a DataLoader worker raised it: the loader re-raises it in
    the training process with the worker's whole traceback as its message, the line last."""
    text = str(error)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


@contextlib.contextmanager
def naming_option(key: str) -> Iterator[None]:
    """A CheckpointError raised inside starts with ``key``, the option that named the file: the readers
    of a checkpoint know its path, not which of the run's options gave it."""
    try:
        yield
    except CheckpointError as e:
        message = user_message(e)
        if message.startswith(key):
            raise
        raise CheckpointError(f"{key}: {message}") from None
