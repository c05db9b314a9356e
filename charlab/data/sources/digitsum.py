"""`digitsum[:k=..,n=..,from=SOURCE]`: k digits side by side, labelled with their sum (see charlab.data.digitsum)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from ...config import DataConfig
from .._registry import SOURCES, Progress
from .. import digitsum as gen
from .base import Option, Source, resolve

if TYPE_CHECKING:
    from ..dataset import CharDataset


@SOURCES.register("digitsum")
class DigitsumSource(Source):
    title = "Digit sums (k digits → their sum)"
    help = "Images of k handwritten digits side by side, labelled with their sum (the digit-sum report's task)."
    prefixes = ("digitsum",)
    options = (
        Option("k", int, gen.DEFAULTS["k"], choices=(2, 3, 4, 5), label="Digits per image"),
        Option("from", str, "", label="Digits from", placeholder=gen.DEFAULTS["from"],
               help="Any source with the classes 0–9: the synthetic digits, Chars74K's zip, mnist:DIR, a folder."),
    )
    menu = 50

    @classmethod
    def compose(cls, values: Mapping[str, Any]) -> str:
        digits = str(values.get("from") or "").strip()
        return f"digitsum:k={int(values.get('k', gen.DEFAULTS['k']))}" + (f",from={digits}" if digits else "")

    def digits(self) -> Source:
        return resolve(gen.parse_options(self.arg)["from"])

    def check(self) -> None:
        self.digits().check()

    def fingerprint(self, split: str) -> Any:
        """The digit source's own identity, so a changed zip or folder rebuilds the composites."""
        inner = self.digits()
        return [inner.text, inner.fingerprint(split)]

    def build(self, cfg: DataConfig, split: str, progress: Progress | None) -> Optional["CharDataset"]:
        return gen.digitsum_source(self.arg, cfg, split, progress)
