"""`synthetic[:key=value,...]`: charlab's own handwriting-like characters (no files; see charlab.data.synthetic)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ...config import DataConfig
from .._registry import SOURCES, Progress
from .. import synthetic as gen
from .base import Counts, Option, Source

if TYPE_CHECKING:
    from ..dataset import CharDataset

_CLASS_LABELS = {"62": "62: 0–9 A–Z a–z", "36": "36: 0–9 A–Z", "digits": "10: 0–9", "upper": "26: A–Z", "lower": "26: a–z"}
_SIZES = (30, 50, 100, 200, 400, 800)  # the sidebar's choices of training images per class


@SOURCES.register("synthetic")
class SyntheticSource(Source):
    title = "Synthetic (built in)"
    help = "Handwriting-like characters charlab draws itself (no files)."
    prefixes = ("synthetic",)
    options = (
        Option("classes", str, gen.DEFAULTS["classes"], choices=tuple(_CLASS_LABELS), label="Classes",
               choice_labels=_CLASS_LABELS),
        Option("profile", str, gen.DEFAULTS["profile"], choices=gen.PROFILES, label="Counts per class",
               choice_labels={"uniform": "even", "longtail": "long tail"},
               help="long tail: one class with a single image, many small ones, a few full "
                    "(like the unbalanced 36-class report)"),
        Option("n", int, gen.DEFAULTS["n"], choices=_SIZES, label="Training images per class",
               help="Fewer images load and train faster; the test split gets a fifth as many."),
    )
    menu = 10

    @classmethod
    def compose(cls, values: Mapping[str, Any]) -> str:
        """Only what differs from the defaults, so the plain choice reads `synthetic`."""
        opts = [f"{k}={values[k]}" for k in ("classes", "profile") if values.get(k, gen.DEFAULTS[k]) != gen.DEFAULTS[k]]
        n = int(values.get("n", gen.DEFAULTS["n"]))
        opts += [f"n={n}", f"test_n={max(5, n // 5)}"] if n != gen.DEFAULTS["n"] else []
        return "synthetic" + (":" + ",".join(opts) if opts else "")

    def check(self) -> None:
        gen.parse_options(self.arg)

    def build(self, cfg: DataConfig, split: str, progress: Progress | None) -> "CharDataset":
        return gen.synthetic_source(self.arg, cfg, split, progress)

    def counts(self, split: str = "train", progress: Progress | None = None) -> Counts:
        """From the options alone: how many of each class the generator draws (nothing is drawn)."""
        opts = gen.parse_options(self.arg)
        classes = list(gen.CLASS_SETS[opts["classes"]])
        seed = DataConfig.seed if opts["seed"] is None else opts["seed"]
        if split == "train":
            counts = gen.class_counts(len(classes), opts["n"], opts["profile"], seed)
        else:
            counts = np.full(len(classes), opts["test_n"], dtype=np.int64)
        return classes, np.asarray(counts, np.int64), []
