"""What a data source is: the `Source` protocol, the options each kind declares, and `resolve`.

A source kind is one class, registered in `SOURCES` under its name:

    @SOURCES.register("toy")
    class ToySource(Source):
        title = "Toy shapes"                      # the sidebar's name for the kind
        prefixes = ("toy",)                       # it reads the strings `toy` and `toy:ARG`
        options = (Option("n", int, 10, choices=(10, 20), label="Images per class"),)

        @classmethod
        def compose(cls, values): return f"toy:n={values['n']}"   # sidebar values -> source string
        def build(self, cfg, split, progress): ...                # -> CharDataset, or None (no test split)

`resolve(text)` turns a source string into an instance: a registered prefix (`synthetic`,
`mnist:DIR`, ...) or, for a path, the first kind whose `claims(path)` is true (a folder or
.zip, a .csv). The app's sidebar builds its widgets from `title`, `help` and `options`.

Importing this module (and the kinds' modules) imports no torch: the app's landing page
draws the sidebar from these declarations before anything is loaded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional

import numpy as np

from ...config import DataConfig
from ...errors import CharlabError, DataError
from .._registry import SOURCES, Progress

if TYPE_CHECKING:
    from ..dataset import CharDataset

Counts = tuple[list[str], np.ndarray, list[dict]]  # (classes, images per class, skipped files)
_CODE_ROOT = Path(__file__).resolve().parents[1]  # charlab/data: generated sources are rebuilt when it changes


@dataclass(frozen=True)
class Option:
    """One setting of a source kind: what the sidebar shows, and what `compose` receives."""

    name: str  # the key in compose()'s values
    type: type = str  # str | int | float | bool: decides the widget and the value's type
    default: Any = None  # the value a widget starts at (None: an empty text box)
    choices: tuple = ()  # allowed values in menu order; () = free input
    label: str = ""  # the widget's label (default: the name)
    help: str = ""  # the widget's tooltip
    placeholder: str = ""  # example shown in an empty text box
    choice_labels: Mapping[Any, str] = field(default_factory=dict)  # display text per choice

    def display(self, value: Any) -> str:
        return self.choice_labels.get(value, str(value))


class Source:
    """One source string, resolved to its kind. Subclasses set the class attributes and `build`
    (named kinds) or override `load` (kinds that cache in their own way, like folders and zips)."""

    title: ClassVar[str] = ""  # the sidebar's name for the kind
    help: ClassVar[str] = ""  # one paragraph: what the kind reads
    prefixes: ClassVar[tuple[str, ...]] = ()  # `prefix` / `prefix:ARG` strings this kind reads; () for path kinds
    options: ClassVar[tuple[Option, ...]] = ()  # the sidebar's widgets, in order
    menu: ClassVar[int] = 100  # position in the sidebar's list of kinds (lower first)
    pages: ClassVar[bool] = False  # each image is a file on its own page: side inputs (charlab.data.geometry) can be measured

    def __init__(self, text: str, prefix: str = "", arg: str = ""):
        self.text = text  # the source string as given (stored in every dataset loaded from it)
        self.prefix = prefix  # the registered prefix it matched ("" for a path)
        self.arg = arg  # the text after `prefix:`

    # --- declarations
    @classmethod
    def claims(cls, path: Path) -> bool:
        """Path kinds: whether an existing file or folder is theirs."""
        return False

    @classmethod
    def compose(cls, values: Mapping[str, Any]) -> str:
        """The sidebar's option values (one per declared option) -> the source string; "" while incomplete."""
        raise NotImplementedError(f"{cls.__name__} declares no sidebar composition")

    # --- the protocol
    def check(self) -> None:
        """Cheap (decodes nothing): raise DataError when the source cannot load (missing files, bad options)."""

    def identity(self) -> str:
        """What makes two source strings the same data (a train/test leak check compares these)."""
        return json.dumps([self.prefix, self.arg.strip()])

    def fingerprint(self, split: str) -> Any:
        """JSON-able identity of the data behind a split for the cache key (file stamps); None = the
        arguments and the code say it all (generated sources)."""
        return None

    def load(self, cfg: DataConfig, split: str, progress: Progress | None) -> Optional["CharDataset"]:
        """uint8 N×1×S×S dataset of a split ("train" | "test"), cached on disk; None for "test" when the
        source has no test split of its own."""
        from .. import cache

        key = cache.cache_key({"kind": "named", "name": self.prefix, "arg": self.arg, "split": split,
                               "seed": cfg.seed, "prep": cache.prep_options(cfg), "code": code_fingerprint(),
                               "files": self.fingerprint(split)})
        ds = cache.load_cached(key, self.text)
        if ds is not None:
            return ds
        ds = self.build(cfg, split, progress)
        if ds is None:
            return None
        ds.source = ds.source or self.text
        cache.save_cached(key, ds)
        return ds

    def build(self, cfg: DataConfig, split: str, progress: Progress | None) -> Optional["CharDataset"]:
        """The uncached load (named kinds)."""
        raise NotImplementedError

    def load_test(self, cfg: DataConfig, progress: Progress | None, train_source: Optional[str] = None) -> "CharDataset":
        """As an explicit test source: its own test split when it has one, otherwise all of it."""
        ds = self.load(cfg, "test", progress)
        return ds if ds is not None else self.load(cfg, "train", progress)

    def counts(self, split: str = "train", progress: Progress | None = None) -> Counts:
        """(classes, counts, skipped) without decoding where the kind can; this default loads (or
        reads the cache) and counts."""
        ds = self.load(DataConfig(), split, progress)
        if ds is None:
            return [], np.zeros(0, np.int64), []
        return list(ds.classes), ds.counts(), list(ds.skipped)


class PathSource(Source):
    """A kind read from one file or folder named by the source string (its one option, `path`)."""

    @classmethod
    def compose(cls, values: Mapping[str, Any]) -> str:
        return str(values.get("path") or "").strip()

    @property
    def path(self) -> Path:
        return Path(self.text).expanduser()

    def identity(self) -> str:
        return str(self.path.resolve())

    def fingerprint(self, split: str) -> Any:
        from ..cache import file_stamp

        return file_stamp(self.path)


def kinds() -> list[tuple[str, type[Source]]]:
    """(name, kind) of every registered kind, in the sidebar's order."""
    return sorted(((n, SOURCES.get(n)) for n in SOURCES.names()), key=lambda nk: nk[1].menu)


def prefixes() -> list[str]:
    return [p for _, k in kinds() for p in k.prefixes]


def resolve(text: str) -> Source:
    """A source string -> its Source (nothing is read beyond what tells a folder from a file)."""
    if text is None or not str(text).strip():
        raise DataError(f"no data source given: name one ({', '.join(prefixes())}) or a folder, .zip or .csv path")
    name, _, arg = text.strip().partition(":")
    for _, kind in kinds():
        if name in kind.prefixes:
            return kind(text, name, arg)
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"data source not found: {text} is neither an existing file or folder nor a named "
                        f"source ({', '.join(prefixes())})")
    for _, kind in kinds():
        if kind.claims(path):
            return kind(text)
    raise DataError(f"{path} is not a folder, a .zip or a .csv file")


def code_fingerprint() -> list:
    """Sizes and mtimes of the data package's code: generated sources are rebuilt when it changes."""
    return [(str(p.relative_to(_CODE_ROOT)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(_CODE_ROOT.rglob("*.py"))]


def check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise CharlabError(f"split must be 'train' or 'test', got {split!r}")
