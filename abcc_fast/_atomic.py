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
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

PathLike = Union[str, os.PathLike]

__all__ = ["atomic_path", "write_bytes", "write_text", "save_safetensors", "atomic_directory",
           "swap_into_place", "fsync_dir"]


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
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
    from safetensors.torch import save_file

    dense = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(dense, str(tmp), metadata=metadata)
    return Path(path)


def swap_into_place(tmp: PathLike, target: PathLike) -> None:
    """Move the finished directory `tmp` to `target`, replacing what was there."""
    tmp, target = Path(tmp), Path(target)
    fsync_dir(tmp)
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent)) / "old"
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
