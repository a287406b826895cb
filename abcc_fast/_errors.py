"""How the `abcc` command reports failures: one line that says what went wrong, where, and how to
fix it (exit code 2); an unexpected error gets one line plus the file holding its traceback
(exit code 1); Ctrl-C says what was kept (exit code 130)."""
from __future__ import annotations

import errno
import os
import tempfile
import time
import traceback

EXIT_USAGE = 2          # expected failures: bad input, missing file, full disk, ...
EXIT_INTERNAL = 1       # a bug: the traceback is written to a file
EXIT_INTERRUPT = 130    # Ctrl-C (128 + SIGINT), the shell's convention

MAX_LINE = 1500


class Interrupted(KeyboardInterrupt):
    """Ctrl-C with a note of what was saved (raised by a command that knows)."""

    def __init__(self, saved: str):
        super().__init__(saved)
        self.saved = saved


# errors that are the user's input or environment, never a bug in abcc_fast
EXPECTED = (ValueError, FileNotFoundError, FloatingPointError, OSError)


def one_line(text: str) -> str:
    """Collapse whitespace (a message is one line) and cap the length."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_LINE else text[:MAX_LINE] + " [...]"


def describe_os_error(err: OSError) -> str:
    """An OSError as what happened to which path and what to do about it."""
    path = err.filename if err.filename is not None else ""
    if err.filename2 is not None:
        path = f"{err.filename} -> {err.filename2}"
    code = err.errno
    if code in (errno.EACCES, errno.EPERM):
        return (f"permission denied: {path}; check the permissions of that file or folder, or choose a path you "
                "can write (e.g. another --out)")
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return (f"no space left on the device while writing {path}; free some space or choose another --out. "
                "Nothing was replaced: outputs are built in a temporary folder and moved into place when complete")
    if code in (errno.ENOTEMPTY, errno.EEXIST):
        return (f"{path} appeared while this command was writing it: another abcc process is probably writing the "
                "same output; run one at a time, then rerun this command")
    if code == errno.ENOTDIR:
        return f"{path}: a part of this path is a file, not a folder; choose another path"
    if code == errno.EISDIR:
        return f"{path} is a folder where a file was expected; give the path of a file"
    if code == errno.ENOENT:
        return f"no such file or folder: {path}"
    if code == errno.EROFS:
        return f"{path} is on a read-only file system; choose another --out"
    if code == errno.ENAMETOOLONG:
        return f"path too long: {path}"
    return f"{err.strerror or type(err).__name__}: {path}" if path else str(err)


def describe(err: BaseException) -> str:
    """The one-line message of an expected error."""
    if isinstance(err, FileNotFoundError) and err.errno is None:
        return one_line(str(err))       # raised by us with a full sentence
    if isinstance(err, OSError) and err.errno is not None:
        return one_line(describe_os_error(err))
    if isinstance(err, FloatingPointError):
        return one_line(f"the computation diverged: {err}")
    return one_line(str(err) or type(err).__name__)


def write_traceback(err: BaseException, command: str) -> str:
    """Write ``err``'s traceback to a file in the temporary folder (``$ABCC_LOG_DIR`` when set);
    returns its path (or a note when even that fails)."""
    folder = os.environ.get("ABCC_LOG_DIR") or tempfile.gettempdir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"abcc-{command}-{stamp}-", suffix=".txt", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))
        return path
    except OSError as write_err:
        return f"(could not be written: {write_err.strerror}; rerun with --debug to see it)"
