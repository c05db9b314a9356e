"""Atomic file writes: write a temp file in the same folder, fsync, os.replace, fsync the folder.

A reader (the app, another process) sees either the old file or the new one, never a
torn one; a full disk leaves the old file intact and raises a CharlabError that says so.
The folder is fsynced after the replace: without it a power cut can lose the rename
itself, and the file comes back as its old version (or not at all) after the reboot.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO, Optional

from .errors import CharlabError

_FULL = (errno.ENOSPC, errno.EDQUOT)


def _umask() -> int:
    """The process umask (read without changing it where Linux says it; else swapped and back)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (and Windows) refuse fsync on a folder; the data is still written
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(f)` on a temp file beside `path`, then atomically replace `path`."""
    path = Path(path)
    if path.is_dir():
        raise CharlabError(f"{path} is a folder: give a file name to write to")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CharlabError(f"cannot write {path}: a part of its folder path is a file") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600; the file gets what open() would give it (0666 less the umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno in _FULL:
            raise CharlabError(f"disk full while writing {path}; the previous version was kept") from e
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_jsonl(path: str | os.PathLike, bad_lines: Optional[list[int]] = None) -> list[dict]:
    """Read an append-only JSON-lines log. A torn last line (a writer killed mid-write, no
    newline) is dropped silently; any other line that is not a JSON object is skipped and
    its 1-based number added to `bad_lines`, so the caller can say the log is damaged."""
    rows: list[dict] = []
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return rows
    torn = lines.pop()  # after the last newline: b"" when the log ends cleanly, else a torn line
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif bad_lines is not None:
            bad_lines.append(n)
    if torn.strip():
        try:  # a complete object that merely lacks its newline still counts
            row = json.loads(torn)
            if isinstance(row, dict):
                rows.append(row)
        except ValueError:
            pass
    return rows


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may be short: signals, pipes, some filesystems)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "write returned 0")
        view = view[n:]


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one line and fsync. On failure (a full disk) the file is cut back to where it
    was, so no earlier line is lost and no half line stays behind for the next append."""
    data = (json.dumps(row) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            write_all(fd, data)
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            if e.errno in _FULL:
                raise CharlabError(f"disk full while appending to {path}; the line was not written "
                                   "(free some space and resume the run)") from e
            raise
    finally:
        os.close(fd)


def repair_jsonl(path: str | os.PathLike) -> int:
    """Cut a torn last line (no trailing newline) so the next append starts clean.

    Returns the number of bytes removed. Called before a resumed run appends again.
    """
    try:
        with open(path, "rb+") as f:
            data = f.read()
            if not data or data.endswith(b"\n"):
                return 0
            keep = data.rfind(b"\n") + 1
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
            return len(data) - keep
    except FileNotFoundError:
        return 0
