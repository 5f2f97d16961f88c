"""Shared pieces of the console entry points: one-line user errors, Hydra's errors in one line."""

from __future__ import annotations

import contextlib
import difflib
import errno
import logging
import os
import re
import sys
from collections.abc import Iterator

from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import OmegaConfBaseException

from vltr.utils.errors import VltrError

log = logging.getLogger("vltr")


def find_user_error(e: BaseException) -> VltrError | None:
    """The :class:`VltrError` behind ``e`` (``e`` itself or one it was raised from), if any."""
    # Hydra wraps exceptions raised inside instantiate(); find ours in the chain.
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, VltrError):
            return e
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def one_line(err: BaseException) -> str:
    """The user-facing message of ``err`` on one line.

    An error raised in a DataLoader worker comes back re-raised with the worker's traceback in
    its message ("Caught StoreError in DataLoader worker process 0 ... Original Traceback");
    the last line of that holds the original message.
    """
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        prefix = f"{type(err).__module__}.{type(err).__name__}: "
        text = last[len(prefix) :] if last.startswith(prefix) else last
    return " ".join(text.split())


@contextlib.contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Turn a :class:`VltrError` (also inside Hydra's InstantiationException) into one line on
    stderr and exit status 2; anything else is a bug and keeps its traceback."""
    try:
        yield
    except (VltrError, InstantiationException) as e:
        err = find_user_error(e)
        if err is None:
            raise
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


# errors of the machine, not of vltr: an unwritable or full output folder
_ENVIRONMENT_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENOTDIR,
}


@contextlib.contextmanager
def hydra_errors(prog: str) -> Iterator[None]:
    """Around a ``@hydra.main`` function: Hydra's own errors (an override of a key that does not
    exist, an unknown config group option, override syntax) and a file or folder that cannot be
    accessed or written (a read-only output folder, a full disk) become one line on stderr and
    exit status 2, instead of Hydra's multi-line report or a traceback.

    Sets ``HYDRA_FULL_ERROR=1`` so Hydra re-raises instead of printing; errors of the task
    itself are turned into one line by :func:`user_errors` inside it, and bugs keep their
    traceback.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except (ConfigCompositionException, OverrideParseException) as e:
        print(f"{prog}: error: {hydra_message(e)}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except OSError as e:
        if e.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(
            f"{prog}: error: {where}cannot access or write ({e.strerror}); outputs go under "
            "paths.log_dir=... (one run's folder: hydra.run.dir=...)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2) from None


def hydra_message(e: Exception) -> str:
    """One line for an error Hydra raised while composing the config."""
    if isinstance(e, MissingConfigException) and e.options:
        text = str(e).splitlines()[0]
        found = re.search(r"Could not find '([^']+)/([^']+)'", text)
        if found:
            group, name = found.groups()
            close = difflib.get_close_matches(name, e.options, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            return f"{group}={name}: no such option ({hint}choose one of: {', '.join(e.options)})"
    cause = e.__cause__
    text = " ".join(str(e).split())
    found = re.match(r"Could not override '([^']+)'", text)
    if found and isinstance(cause, OmegaConfBaseException):
        key = found.group(1)
        parent = getattr(cause, "parent_node", None)
        options = [str(k) for k in parent.keys()] if parent is not None else []
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], options, n=1)
        prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
        value = re.search(r"use (\+\S+)", text)
        parts = [f"did you mean {prefix}{close[0]}?"] if close else []
        if value:
            parts.append(f"to add a new key use {value.group(1)}")
        return f"{key}: no such key" + (f" ({'; '.join(parts)})" if parts else "")
    if isinstance(cause, OmegaConfBaseException):
        text += " (" + " ".join(str(cause).splitlines()[0].split()) + ")"
    return text
