"""Atomic writes: the one way abcc_fast puts files and directories on disk.

Files are written to a temporary file in the target's directory, flushed and fsynced, then
`os.replace`d over the target (atomic on POSIX): a reader sees the old file or the new one,
never a half-written one, and an error or interrupt leaves the old file untouched and no
temporary behind.

Directories are built in a temporary sibling and swapped in: the old directory is renamed aside,
the new one renamed into place, the old one removed. Between the two renames the target is briefly
absent, but never half-written (checkpoints that must never be absent use a `LATEST` pointer file
on top of this, see abcc_fast/train/checkpoint.py).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional, Union

from safetensors.torch import save_file

PathLike = Union[str, os.PathLike]

__all__ = ["atomic_path", "write_bytes", "write_text", "save_safetensors", "atomic_directory",
           "swap_into_place", "fsync_dir", "temp_dir", "clean_stale_temps", "sha256_file"]

# Temporary siblings are named ``.NAME.tmp-HOST-PID-RANDOM`` (``old-`` for a directory moved aside):
# the next writer of NAME removes those of a process that no longer runs (kill -9, power loss),
# and never those of a live writer. HOST is a short hash of the host name, so a shared file
# system never sees one machine remove another's work in progress.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"^(tmp|old)-([0-9a-f]{8})-(\d+)-")
_TEMP_ANY_RE = re.compile(r"^\..+?\.(tmp|old)-([0-9a-f]{8})-(\d+)-")
_LEGACY_RE = re.compile(r"^(tmp-[^.]+|old-[^.]+|[^.]+\.tmp)$")   # names written before the pid tag
LEGACY_STALE_S = 3600.0


def _prefix(name: str, kind: str) -> str:
    return f".{name}.{kind}-{_HOST}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:           # EPERM: it exists, owned by someone else
        return True
    return True


def clean_stale_temps(target: PathLike, any_name: bool = False) -> list[Path]:
    """Remove the temporary siblings of ``target`` left by a writer that died (see ``_TEMP_RE``);
    with ``any_name``, those of every name in ``target``'s folder. Returns what was removed.
    Those of a live process, or of another host, are kept; untagged ones (written before the tag
    existed) only when untouched for ``LEGACY_STALE_S``."""
    target = Path(target)
    removed = []
    lead = "." if any_name else f".{target.name}."
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(lead):
            continue
        rest = e.name[len(lead):]
        m = _TEMP_ANY_RE.match(e.name) if any_name else _TEMP_RE.match(rest)
        if m:
            stale = m.group(2) == _HOST and not _alive(int(m.group(3)))
        elif not any_name and _LEGACY_RE.match(rest):
            try:
                stale = time.time() - e.stat(follow_symlinks=False).st_mtime > LEGACY_STALE_S
            except OSError:
                stale = False
        else:
            stale = False
        if not stale:
            continue
        path = Path(e.path)
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def temp_dir(target: PathLike, kind: str = "tmp") -> Path:
    """A fresh private directory beside ``target`` for building it (stale ones are removed first)."""
    target = Path(target)
    clean_stale_temps(target)
    return Path(tempfile.mkdtemp(prefix=_prefix(target.name, kind), dir=target.parent))


def sha256_file(path: PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def fsync_dir(path: PathLike) -> None:
    """fsync a directory (so renames inside it are durable); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path` for any writer that takes a path
    (`safetensors.torch.save_file`, `Figure.savefig`, ...); on success it replaces `path`.

    >>> with atomic_path("out/fig.png", suffix=".png") as tmp:
    ...     fig.savefig(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path.name, "tmp"), suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def save_safetensors(tensors: dict, path: PathLike, metadata: Optional[dict] = None) -> Path:
    """`safetensors.torch.save_file` atomically (tensors stored as independent dense CPU copies:
    safetensors refuses shared or non-contiguous storage)."""
    dense = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(dense, str(tmp), metadata=metadata)
    return Path(path)


def swap_into_place(tmp: PathLike, target: PathLike) -> None:
    """Move the finished directory `tmp` to `target`, replacing what was there."""
    tmp, target = Path(tmp), Path(target)
    fsync_dir(tmp)
    if target.exists():
        old = temp_dir(target, "old") / "old"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old.parent, ignore_errors=True)
    else:
        os.replace(tmp, target)
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_directory(target: PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory of `target`; on success it replaces `target`, on an
    error it is removed and `target` is untouched.

    >>> with atomic_directory("run/model") as tmp:
    ...     model.save_pretrained(tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(target)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)   # mkdtemp's folder is private; the result gets the usual mode
    try:
        yield tmp
        swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
