"""Atomic file writes: write a temp file in the same folder, fsync, os.replace.

A reader (the app, another process) sees either the old file or the new one, never a
torn one; a full disk leaves the old file intact and raises a CharlabError that says so.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

from .errors import CharlabError


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(f)` on a temp file beside `path`, then atomically replace `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CharlabError(f"disk full while writing {path}; the previous version was kept") from e
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read an append-only JSON-lines log; a torn last line (a writer killed mid-write) is ignored."""
    rows: list[dict] = []
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return rows


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one line and fsync; one write() call so a crash leaves at most a torn last line."""
    data = (json.dumps(row) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CharlabError(f"disk full while appending to {path}") from e
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
