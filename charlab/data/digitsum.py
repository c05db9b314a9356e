"""`digitsum`: images of several handwritten digits side by side, labelled with their sum.

The digit-sum report took images of 4-digit numbers and predicted the sum of the digits
(37 classes, 0..36). This source rebuilds that task from any digit source, so both ways to
solve it can be compared: end to end (classify the sum) and structured (recognise each
digit, add them up; see `charlab.digitsum`).

Source string: `digitsum` or `digitsum:key=value,...,from=SOURCE` with
  k=INT        digits per image (default 4); the label is their sum, 0..9k
  n=INT        train composites (default 6000)
  test_n=INT   test composites (default 1000)
  jitter=FLOAT horizontal spacing jitter as a fraction of the digit side (default 0.12)
  seed=INT     default: DataConfig.seed
  from=SOURCE  the digit source (default `synthetic:classes=digits`); any source whose classes
               include 0..9 (Chars74K's zip, `mnist:DIR`, a folder). It must come last: it takes
               the rest of the string, commas and colons included.

Train composites use only the digit source's train split and test composites only its test
split, so no test composite holds a training digit. (The validation split charlab carves from
the train composites does share digit images with them; it only steers early stopping.)
Each image is uint8 1×S×(k·S), ink bright on dark; `info["digits"]` holds the k digits (N×k)
and `info["digit_index"]` which digit image of the pool filled each slot (N×k).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from ..config import DataConfig
from ..errors import CharlabError, DataError
from ._registry import Progress
from .dataset import CharDataset, content_hash

if TYPE_CHECKING:  # torch is imported where tensors are made: declaring the source (the sidebar) needs none
    import torch

DEFAULTS = {"k": 4, "n": 6000, "test_n": 1000, "jitter": 0.12, "seed": None, "from": "synthetic:classes=digits"}
DIGITS = [str(d) for d in range(10)]


def parse_options(arg: str) -> dict:
    opts = dict(DEFAULTS)
    text = arg.strip()
    head, sep, inner = text.partition("from=")
    if sep:
        if head and not head.endswith(","):
            raise CharlabError(f"digitsum: 'from=' must start an option (got {text!r})")
        opts["from"] = inner.strip()
        if not opts["from"]:
            raise CharlabError("digitsum: 'from=' needs a digit source, e.g. from=synthetic:classes=digits")
    for part in filter(None, (p.strip() for p in head.split(","))):
        key, eq, value = part.partition("=")
        if not eq or key not in DEFAULTS or key == "from":
            raise CharlabError(f"digitsum: bad option {part!r}; valid: {', '.join(DEFAULTS)} (key=value, from= last)")
        try:
            opts[key] = float(value) if key == "jitter" else int(value)
        except ValueError:
            raise CharlabError(f"digitsum: {key} must be a number, got {value!r}") from None
    if not 1 <= opts["k"] <= 8:
        raise CharlabError(f"digitsum: k must be 1..8 digits, got {opts['k']}")
    if opts["n"] < 1 or opts["test_n"] < 1:
        raise CharlabError("digitsum: n and test_n must be positive")
    if not 0 <= opts["jitter"] <= 0.4:
        raise CharlabError(f"digitsum: jitter must be in [0, 0.4], got {opts['jitter']}")
    return opts


def digit_pool(ds: CharDataset) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The images of classes 0..9 of any dataset, with their labels as the digit values."""
    import torch

    names = {name: i for i, name in enumerate(ds.classes)}
    missing = [d for d in DIGITS if d not in names]
    if missing:
        raise DataError(f"digitsum needs a digit source with classes 0-9; {ds.source or 'it'} lacks {', '.join(missing)}")
    value_of = torch.full((len(ds.classes),), -1, dtype=torch.int64)
    for d in DIGITS:
        value_of[names[d]] = int(d)
    values = value_of[ds.labels]
    keep = values >= 0
    return ds.images[keep], values[keep]


def compose(images: "torch.Tensor", values: "torch.Tensor", k: int, n: int, jitter: float,
            rng: np.random.Generator) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """n composites of k digits drawn uniformly from the pool: (uint8 n×1×S×kS, digits n×k, index n×k)."""
    import torch

    pool = images[:, 0].numpy()  # M×S×S
    s = pool.shape[1]
    index = rng.integers(0, len(pool), size=(n, k))  # n×k
    # Uniform digits over the pool give each class its share of the pool; draw the digit value
    # first so the sum is a sum of uniform digits whatever the pool's class balance.
    by_value = [np.flatnonzero(values.numpy() == d) for d in range(10)]
    digits = rng.integers(0, 10, size=(n, k))
    for d in range(10):
        mask = digits == d
        index[mask] = by_value[d][rng.integers(0, len(by_value[d]), size=int(mask.sum()))]
    dx = np.rint(rng.uniform(-jitter, jitter, size=(n, k)) * s).astype(int)  # spacing jitter
    dy = np.rint(rng.uniform(-0.07, 0.07, size=(n, 1)) * s + rng.uniform(-0.04, 0.04, size=(n, k)) * s).astype(int)  # baseline drift
    canvas = np.zeros((n, s, k * s), np.uint8)  # n×S×kS
    for j in range(k):
        for i in range(n):
            x0, y0 = j * s + dx[i, j], dy[i, j]
            # clip the S×S digit to the canvas; overlapping ink merges with max (bright ink)
            cx0, cx1 = max(x0, 0), min(x0 + s, k * s)
            cy0, cy1 = max(y0, 0), min(y0 + s, s)
            patch = pool[index[i, j], cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
            np.maximum(canvas[i, cy0:cy1, cx0:cx1], patch, out=canvas[i, cy0:cy1, cx0:cx1])
    return (torch.from_numpy(canvas).unsqueeze(1), torch.from_numpy(digits.astype(np.int64)),
            torch.from_numpy(index.astype(np.int64)))


def digitsum_source(arg: str, cfg: DataConfig, split: str, progress: Optional[Progress]) -> CharDataset | None:
    from .sources import load_source  # the digit source goes through the same dispatch and cache

    opts = parse_options(arg)
    digits_ds = load_source(opts["from"], cfg, split=split, progress=progress)
    if digits_ds is None:  # the digit source has no test split: neither has the task
        return None
    images, values = digit_pool(digits_ds)
    seed = cfg.seed if opts["seed"] is None else opts["seed"]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, opts["k"]])
    n = opts["n"] if split == "train" else opts["test_n"]
    if progress:
        progress(0, n, f"composing {n} {opts['k']}-digit images")
    canvas, digits, index = compose(images, values, opts["k"], n, opts["jitter"], rng)
    if progress:
        progress(n, n, "composed")
    k = opts["k"]
    return CharDataset(images=canvas, labels=digits.sum(dim=1), classes=[str(v) for v in range(9 * k + 1)],
                       paths=[f"digitsum#{split}{i}" for i in range(n)], skipped=list(digits_ds.skipped),
                       hashes=[content_hash(canvas[i].numpy().data) for i in range(n)],  # composites exist at S only
                       source="", info={"digits": digits, "digit_index": index, "k": k,
                                        "digit_source": opts["from"], "part": split})
