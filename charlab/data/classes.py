"""Class names: the characters themselves wherever they are known, in one fixed order.

Character names sort 0-9, A-Z, a-z (the order of Chars74K, EMNIST byclass and every
62-class report); any other names (a folder called "cat") come after, sorted naturally
so "class10" follows "class9".
"""
from __future__ import annotations

import re
import string
from typing import Iterable

CHARS62 = string.digits + string.ascii_uppercase + string.ascii_lowercase  # "0..9A..Za..z"
_CHAR_RANK = {c: i for i, c in enumerate(CHARS62)}
_SAMPLE_RE = re.compile(r"^sample0*(\d+)$", re.IGNORECASE)

# EMNIST's mapping files (emnist-<split>-mapping.txt) give "label ascii_code [ascii_code]";
# these are the same tables, used when the mapping file is absent. balanced and bymerge merge
# the lowercase letters that look like their capitals (c i j k l m o p s u v w x y z).
_MERGED47 = string.digits + string.ascii_uppercase + "abdefghnqrt"
EMNIST_CLASSES = {
    "byclass": list(CHARS62),
    "bymerge": list(_MERGED47),
    "balanced": list(_MERGED47),
    "letters": list(string.ascii_uppercase),  # labels 1..26, upper and lower case merged
    "digits": list(string.digits),
    "mnist": list(string.digits),
}


def chars74k_class_name(sample_dir_name: str) -> str:
    """Chars74K folder name -> character: Sample001-010 -> 0-9, 011-036 -> A-Z, 037-062 -> a-z.

    Any other name (or a number outside 1..62) is returned unchanged.
    """
    m = _SAMPLE_RE.match(sample_dir_name)
    if m:
        n = int(m.group(1))
        if 1 <= n <= len(CHARS62):
            return CHARS62[n - 1]
    return sample_dir_name


def natural_key(name: str) -> tuple:
    """"img10" sorts after "img9": digit runs compare as numbers."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name) if t)


def class_sort_key(name: str) -> tuple:
    if name in _CHAR_RANK:
        return (0, _CHAR_RANK[name], ())
    return (1, 0, natural_key(name))


def sort_classes(names: Iterable[str]) -> list[str]:
    """Unique class names in charlab's order: 0-9, A-Z, a-z, then the rest naturally sorted."""
    return sorted(set(names), key=class_sort_key)


def label_names(values: Iterable) -> dict:
    """Numeric labels (as in a CSV or idx file) -> class names.

    The range decides: 0-9 are digits, 0-25 with a label >= 10 are A-Z (the Kaggle A-Z
    layout), 0-35 digits then A-Z, 0-61 the 62 characters; anything else keeps its number.
    """
    vals = sorted({int(v) for v in values})
    if not vals or vals[0] < 0:
        return {v: str(v) for v in vals}
    top = vals[-1]
    if top <= 9:
        table = string.digits
    elif top <= 25:
        table = string.ascii_uppercase
    elif top <= 35:
        table = string.digits + string.ascii_uppercase
    elif top <= 61:
        table = CHARS62
    else:
        return {v: str(v) for v in vals}
    return {v: table[v] for v in vals}


def class_lookup(source: Iterable[str], target: Iterable[str]) -> "np.ndarray":
    """Index map between two class lists BY NAME: lookup[i] is the position of source[i] in
    `target`, or -1 when `target` lacks it. The one place that aligns class orders (a test split
    to its train split, a dataset to a model, an ensemble member to the first)."""
    import numpy as np

    pos = {c: i for i, c in enumerate(target)}
    return np.array([pos.get(c, -1) for c in source], dtype=np.int64)
