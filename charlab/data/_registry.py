"""The registry of named data sources (`name:ARG` strings).

A registered loader has the signature

    loader(arg: str, cfg: DataConfig, split: str, progress: Progress | None) -> CharDataset | None

- `arg` is the text after `name:` ("" for a bare `name`), e.g. "classes=36,profile=longtail".
- `split` is "train" or "test"; a loader returns None for "test" when the source has no
  test split of its own (the train split is then the only data, and val is carved from it).
- `cfg` carries the preprocessing options and image size.
- `progress(done, total, message)` is called now and then on long work (the CLI draws a
  tqdm bar from it, the app an st.progress).

Paths (a folder, a .zip, a .csv) are not registered names; `charlab.data.load_source`
dispatches them by what they are on disk.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..registry import Registry

Progress = Callable[[int, int, str], None]

SOURCES: Registry = Registry("data source")
