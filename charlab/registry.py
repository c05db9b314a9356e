"""One small registry type shared by models, data sources, augmentation presets and recipes.

Like torchvision's `_api.py` and timm's `register_model`: names are plain strings so a
config stays serializable, duplicates fail at import time, and an unknown name fails
with the list of valid ones.
"""
from __future__ import annotations

import fnmatch
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, *, ordered: bool = False):
        self.kind = kind  # used in error messages: "unknown model 'x'"
        # ordered: names() keeps registration order (a short list of choices whose first is the
        # default reads best that way in a menu); otherwise names() sorts (long lists: the zoo)
        self.ordered = ordered
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: `@MODELS.register()` uses the function's own name."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(self.names()) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid: {valid}") from None

    def names(self, pattern: str | None = None) -> list[str]:
        keys = list(self._items) if self.ordered else sorted(self._items)
        return [k for k in keys if pattern is None or fnmatch.fnmatch(k, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
