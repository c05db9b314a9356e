"""Label overrides: the user's relabel / exclude / keep decisions, applied by every loader.

The source itself is never modified (shared data is read-only). Decisions live in a small JSON
file, one entry per image, keyed by the image's path as the source spells it (the zip entry,
the folder-relative path; `CharDataset.source_path`) AND its content hash
(`CharDataset.hashes`), with a timestamp:

    {"format": "charlab-label-overrides", "version": 1, "source": "…/trainPart1.zip",
     "entries": [{"path": "Sample011/img011-001.png", "hash": "3f2a…", "action": "relabel",
                  "label": "B", "given": "A", "time": "2026-12-01T21:40:00Z"}, …],
     "history": [{"time": …, "what": "apply the swap A<->B", "changes": [{"path", "before", "after"}]}]}

Entries are sorted by path so two versions diff line by line. `history` holds the steps that
`undo()` reverts, a bulk action (accept 80 suspects) being one step.

    ov = LabelOverrides.load(default_path_for(source))    # a missing file is an empty set
    ov.relabel(h, "A/img1.png", "B", given="A"); ov.exclude(h2, "A/img7.png"); ov.save()
    dataset, report = apply(dataset, ov)                    # report: overridden, excluded, stale

An entry whose image is gone or whose bytes changed (hash mismatch) is reported as stale and
never applied: the decision was about other content.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import torch

from .errors import CharlabError
from .io import atomic_write_json

FORMAT = "charlab-label-overrides"
VERSION = 1
ACTIONS = ("relabel", "exclude", "keep")  # keep: reviewed, the given label is right (hides it from review)
MAX_HISTORY = 200  # undo steps kept in the file


def user_data_dir() -> Path:
    """Where the user's own files live: $CHARLAB_USER_DATA, else ./user_data (the app's folder)."""
    return Path(os.environ.get("CHARLAB_USER_DATA", "user_data")).expanduser()


def default_path_for(source: str) -> Path:
    """The override file that follows `source`: user_data/labels/<name>-<8 hex of the source>.json.

    The hash is of the resolved path where the source is a path, so `./a.zip` and `/abs/a.zip`
    share one file; the readable name is only for people browsing the folder.
    """
    p = Path(source).expanduser()
    ident = str(p.resolve()) if p.exists() else source
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", p.name or source).strip("._")[:60] or "source"
    return user_data_dir() / "labels" / f"{stem}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}.json"


def resolve(value: Optional[str], source: str) -> Optional[str]:
    """A `--labels` value -> the override file to use: "auto" is the source's own file
    (`default_path_for`) when it exists, else None; "none" or "" is None; a path must exist."""
    if value is None or value.strip().lower() in ("", "none"):
        return None
    if value.strip().lower() == "auto":
        p = default_path_for(source)
        return str(p) if p.is_file() else None
    if not Path(value).expanduser().is_file():  # before any data loads: a typo must not cost a long load
        raise CharlabError(f"label override file {value} does not exist")
    return value


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class LabelOverrides:
    """The decisions of one override file, keyed by source-relative path (see the module docstring)."""

    path: Optional[Path] = None  # where save() writes; None = in memory only
    source: str = ""  # the source the decisions were made on (informational; hashes do the checking)
    entries: dict[str, dict] = field(default_factory=dict)  # source-relative path -> entry
    history: list[dict] = field(default_factory=list)  # undo steps, oldest first
    _step: Optional[dict] = field(default=None, repr=False)  # the open bulk step, see batch()

    # --- reading and writing -------------------------------------------------------------
    @classmethod
    def load(cls, path: Union[str, os.PathLike], source: str = "") -> "LabelOverrides":
        """Read an override file; a missing file is an empty set (saved on the first decision).

        A file that is not a readable override file raises a CharlabError naming it; the file is
        left exactly as it is (nothing is overwritten until the user fixes or moves it).
        """
        path = Path(path).expanduser()
        if not path.exists():
            return cls(path=path, source=source)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise CharlabError(f"label override file {path} is not readable JSON ({e}); it was left untouched - "
                               f"fix it or move it away to start afresh") from None
        problem = _check_doc(doc)
        if problem:
            raise CharlabError(f"label override file {path} is not a charlab override file: {problem}; "
                               f"it was left untouched")
        entries = {e["path"]: dict(e) for e in doc.get("entries", [])}
        return cls(path=path, source=doc.get("source") or source, entries=entries,
                   history=list(doc.get("history", [])))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "source": self.source,
                "entries": [self.entries[k] for k in sorted(self.entries)],
                "history": self.history[-MAX_HISTORY:]}

    def save(self, path: Union[str, os.PathLike, None] = None) -> Path:
        """Write the file atomically (charlab.io): a reader sees the old version or the new one."""
        target = Path(path).expanduser() if path is not None else self.path
        if target is None:
            raise CharlabError("this override set has no file yet: pass a path to save()")
        atomic_write_json(target, self.to_dict())
        self.path = target
        return target

    # --- decisions -----------------------------------------------------------------------
    def relabel(self, hash: Optional[str], path: str, label: str, *, given: Optional[str] = None) -> str:
        """Image `path` (with content `hash`) is really a `label`. Returns the entry's key."""
        if not str(label).strip():
            raise CharlabError(f"an empty label for {path}: type the class the image shows")
        return self._set(path, {"hash": hash, "action": "relabel", "label": str(label).strip(), "given": given})

    def exclude(self, hash: Optional[str], path: str, *, given: Optional[str] = None) -> str:
        """Leave image `path` out of training and evaluation (unreadable, ambiguous, not a character)."""
        return self._set(path, {"hash": hash, "action": "exclude", "given": given})

    def keep(self, hash: Optional[str], path: str, *, given: Optional[str] = None) -> str:
        """The given label is right: record that it was reviewed (the review grid hides it)."""
        return self._set(path, {"hash": hash, "action": "keep", "given": given})

    def decide(self, decisions: Iterable[dict], what: str = "") -> int:
        """Many decisions as ONE undo step: dicts with hash, path, action and (for relabel) label."""
        n = 0
        with self.batch(what or "bulk decision"):
            for d in decisions:
                action = d.get("action")
                if action not in ACTIONS:
                    raise CharlabError(f"unknown action {action!r}; the actions are {', '.join(ACTIONS)}")
                if action == "relabel":
                    self.relabel(d.get("hash"), d["path"], d["label"], given=d.get("given"))
                else:
                    getattr(self, action)(d.get("hash"), d["path"], given=d.get("given"))
                n += 1
        return n

    @contextmanager
    def batch(self, what: str) -> Iterator[None]:
        """Group the decisions made inside into one undo step."""
        if self._step is not None:  # nested: the outer step collects everything
            yield
            return
        self._step = {"time": _now(), "what": what, "changes": []}
        try:
            yield
        finally:
            step, self._step = self._step, None
            if step["changes"]:
                self.history.append(step)

    def _set(self, path: str, entry: dict) -> str:
        if not path:
            raise CharlabError("an override needs the image's path (as the source spells it)")
        after = {"path": path, **{k: v for k, v in entry.items() if v is not None}, "time": _now()}
        change = {"path": path, "before": self.entries.get(path), "after": after}
        self.entries[path] = after
        if self._step is not None:
            self._step["changes"].append(change)
        else:
            self.history.append({"time": after["time"], "what": f"{entry['action']} {path}", "changes": [change]})
        return path

    def undo(self, key: Optional[str] = None) -> Optional[str]:
        """Revert the last step (key None), or the latest decision about image `key`.

        Returns a sentence saying what was undone, or None when there is nothing to undo.
        """
        for s in range(len(self.history) - 1, -1, -1):
            step = self.history[s]
            changes = [c for c in step["changes"] if key is None or c["path"] == key]
            if not changes:
                continue
            for c in reversed(changes):  # later changes first, so the earliest "before" wins
                if c["before"] is None:
                    self.entries.pop(c["path"], None)
                else:
                    self.entries[c["path"]] = c["before"]
            step["changes"] = [c for c in step["changes"] if c not in changes]
            if not step["changes"]:
                del self.history[s]
            what = step["what"] if key is None else f"the last decision about {key}"
            return f"undid {what}" + (f" ({len(changes)} images)" if len(changes) > 1 else "")
        return None

    # --- looking -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def get(self, path: str) -> Optional[dict]:
        return self.entries.get(path)

    def counts(self) -> dict[str, int]:
        """Entries per action (relabel, exclude, keep)."""
        out = {a: 0 for a in ACTIONS}
        for e in self.entries.values():
            out[e["action"]] = out.get(e["action"], 0) + 1
        return out

    def last_step(self) -> Optional[str]:
        """What undo() would revert, in words (None when nothing)."""
        return self.history[-1]["what"] if self.history else None


def _check_doc(doc) -> str:
    if not isinstance(doc, dict):
        return "the top level is not an object"
    if doc.get("format") != FORMAT:
        return f"its format is {doc.get('format')!r}, not {FORMAT!r}"
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        return f"version {doc.get('version')!r} is newer than this charlab reads ({VERSION})"
    entries = doc.get("entries", [])
    if not isinstance(entries, list):
        return "'entries' is not a list"
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("path"), str) or e.get("action") not in ACTIONS:
            return f"entry {i} needs a 'path' and an 'action' among {', '.join(ACTIONS)}"
        if e["action"] == "relabel" and not isinstance(e.get("label"), str):
            return f"entry {i} ({e['path']}) relabels without a 'label'"
    if not isinstance(doc.get("history", []), list):
        return "'history' is not a list"
    return ""


# --------------------------------------------------------------------------------------------
# Applying


@dataclass
class LabelReport:
    """What applying an override file did to a dataset."""

    file: str = ""  # the override file ("" when none)
    entries: int = 0  # decisions in the file
    overridden: int = 0  # images whose label was changed
    excluded: int = 0  # images left out
    kept: int = 0  # images reviewed and kept as labelled
    stale: list[dict] = field(default_factory=list)  # [{"path", "reason"}]: entries NOT applied, and why

    def notes(self) -> list[str]:
        """One sentence per fact worth telling (for split notes, data info and the app)."""
        if not self.file and not self.entries:
            return []
        out = [f"label overrides {self.file or '(unsaved)'}: {self.overridden} relabelled, {self.excluded} excluded"
               + (f", {self.kept} kept as labelled" if self.kept else "")]
        if self.stale:
            shown = "; ".join(f"{s['path']} ({s['reason']})" for s in self.stale[:3])
            out.append(f"{len(self.stale)} override(s) NOT applied because their image is gone, changed or "
                       f"unknown: {shown}" + (" ..." if len(self.stale) > 3 else ""))
        return out

    def to_dict(self) -> dict:
        return {"file": self.file, "entries": self.entries, "overridden": self.overridden, "excluded": self.excluded,
                "kept": self.kept, "n_stale": len(self.stale), "stale": list(self.stale)}


def apply(dataset, overrides: Union[LabelOverrides, str, os.PathLike, None]):
    """(dataset with the decisions applied, LabelReport). `overrides` may be a path (read here).

    An entry is applied only where the image at its path still has its hash; otherwise it is
    reported stale (image gone, bytes changed, or hashes unknown for this source). A relabel to
    a class the dataset does not have is reported, not applied: class lists are the source's.
    The input dataset is never modified.
    """
    if overrides is None:
        return dataset, LabelReport()
    if not isinstance(overrides, LabelOverrides):
        if not Path(overrides).expanduser().is_file():  # a typo must not silently train on the raw labels
            raise CharlabError(f"label override file {overrides} does not exist")
        overrides = LabelOverrides.load(overrides)
    report = LabelReport(file=str(overrides.path or ""), entries=len(overrides))
    if not len(overrides):
        return dataset, report
    rel = dataset.source_paths() or [f"#{i}" for i in range(len(dataset))]
    where = {p: i for i, p in enumerate(rel)}
    class_index = {c: i for i, c in enumerate(dataset.classes)}
    labels = dataset.labels.clone()  # N
    drop = torch.zeros(len(dataset), dtype=torch.bool)  # N
    for path, e in sorted(overrides.entries.items()):
        i = where.get(path)
        reason = None
        if i is None:
            reason = "no such image in the source"
        elif dataset.hashes is None or not e.get("hash"):
            reason = "content hash unknown, cannot check the image is the one decided on"
        elif dataset.hashes[i] != e["hash"]:
            reason = "the image changed since the decision (hash mismatch)"
        elif e["action"] == "relabel" and e["label"] not in class_index:
            reason = f"label {e['label']!r} is not a class of this source"
        if reason:
            report.stale.append({"path": path, "reason": reason})
        elif e["action"] == "relabel":
            new = class_index[e["label"]]
            if int(labels[i]) != new:
                labels[i] = new
            report.overridden += 1
        elif e["action"] == "exclude":
            drop[i] = True
            report.excluded += 1
        else:
            report.kept += 1
    if not report.overridden and not report.excluded:
        return dataset, report
    out = replace(dataset, labels=labels, info={**dataset.info, "labels": report.to_dict()})
    if report.excluded:
        out = out.subset(torch.nonzero(~drop).flatten())
    return out, report


apply_overrides = apply  # the name charlab/__init__ exports (a bare `apply` reads oddly there)
