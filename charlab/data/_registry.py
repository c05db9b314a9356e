"""The registry of data source kinds, and the progress callback type.

`SOURCES` maps a kind's name to its `Source` class (charlab.data.sources.base): what strings it
reads (`prefixes`, or `claims(path)` for files), the options the sidebar shows, and how it loads,
counts and fingerprints a split. `charlab.data.sources.resolve(text)` picks the kind.

`progress(done, total, message)` is called now and then on long work (the CLI draws a tqdm bar
from it, the app an st.progress).
"""
from __future__ import annotations

from typing import Callable

from ..registry import Registry

Progress = Callable[[int, int, str], None]

SOURCES: Registry = Registry("data source")
