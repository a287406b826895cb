"""Paths read from files we wrote (a manifest's shard names, a checkpoint's ``LATEST``) are plain
file names confined to their folder, and output paths are checked before anything is written.

A manifest or a pointer file may come from anyone: ``..``, a separator, an absolute path, a
symbolic link leading out of the folder, a device or a directory would let it read (and hash, and
print bits of) files elsewhere, hang on a device or crash. :func:`confined_file` refuses all of
them *before* opening anything, with a message that names the field and never the content of the
file it points to.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Union

PathLike = Union[str, os.PathLike]

__all__ = ["plain_name", "confined_file", "confined_dir", "check_output_dir"]


FIX = "the file was modified by hand or is corrupt; write it again"


def plain_name(name, where: str, field: str, fix: str = FIX) -> str:
    """``name`` if it is a plain file name (a non-empty string without a separator, not ``.``/``..``,
    no NUL); else ValueError naming ``where`` and ``field``, ending with ``fix``."""
    if not isinstance(name, str):
        raise ValueError(f"{where}: {field} must be a file name (a string), got {type(name).__name__} "
                         f"{_short(name)}; {fix}")
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
           or os.path.isabs(name) or (os.altsep and os.altsep in name))
    if bad:
        raise ValueError(f"{where}: {field} {_short(name)} is not a plain file name inside the folder (no '/', "
                         f"'..' or absolute paths are allowed); {fix}")
    return name


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def _confined(root: PathLike, name, where: str, field: str, want_dir: bool, fix: str = FIX) -> Path:
    root = Path(root)
    name = plain_name(name, where, field, fix)
    path = root / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ValueError(f"{where}: {field} {name!r} names {path}, which is missing; the folder is incomplete: "
                         f"{fix}, or copy it again") from None
    except OSError as err:
        raise ValueError(f"{where}: {field} {name!r}: cannot inspect {path} ({err.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        # a link is followed only when it stays inside the folder
        real, top = Path(os.path.realpath(path)), Path(os.path.realpath(root))
        if top not in real.parents:
            raise ValueError(f"{where}: {field} {name!r} is a symbolic link that leads out of {root}; copy the "
                             f"file itself into the folder (cp -L)")
        try:
            st = os.stat(path)
        except OSError:
            raise ValueError(f"{where}: {field} {name!r} is a broken symbolic link in {root}") from None
    ok = stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)
    if not ok:
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "special file"
        want = "directory" if want_dir else "regular file"
        raise ValueError(f"{where}: {field} {name!r} names a {kind} ({path}), not a {want}; {fix}")
    return path


def confined_file(root: PathLike, name, where: str, field: str = "file", fix: str = FIX) -> Path:
    """``root/name`` after checking that ``name`` is a plain name and ``root/name`` a regular file
    inside ``root`` (a link only when it resolves inside ``root``); ValueError ending with ``fix``
    otherwise."""
    return _confined(root, name, where, field, want_dir=False, fix=fix)


def confined_dir(root: PathLike, name, where: str, field: str = "name", fix: str = FIX) -> Path:
    """Like :func:`confined_file` for a sub-directory of ``root``."""
    return _confined(root, name, where, field, want_dir=True, fix=fix)


def check_output_dir(path: PathLike, option: str = "--out") -> Path:
    """Check that a directory can be created (or replaced) at ``path`` before any work starts:
    it is not a file and no parent is a file. Returns the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file; give a directory path (a new or existing folder)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{option} {path}: {parent} is a file, so no folder can be created under it; "
                                 f"choose another {option}")
            break
    return path


def check_replaceable_output(path: PathLike, marker, command: str, option: str = "--out") -> Path:
    """Check that ``path`` may be replaced as a whole by the output of ``command``: it is new, empty,
    or holds ``marker`` (a file name, or a tuple of them: written by an earlier run of the command).
    A folder with other files is refused, since replacing it would delete them."""
    path = check_output_dir(path, option)
    markers = (marker,) if isinstance(marker, str) else tuple(marker)
    if path.is_dir() and any(path.iterdir()) and not any((path / m).exists() for m in markers):
        raise ValueError(f"{option} {path} is a folder with other files (no {' or '.join(markers)} of an earlier "
                         f"`{command}`); the output replaces the whole folder, so choose a new or empty folder, or "
                         f"one `{command}` wrote before")
    return path
