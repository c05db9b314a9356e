"""Source kinds: resolve(), the Source protocol, and a new kind shown by the sidebar with no ui.py edit."""
from __future__ import annotations

import numpy as np
import pytest

from app_fixtures import ROOT
from charlab.config import DataConfig
from charlab.data import load_source, source_counts
from charlab.data.sources import SOURCES, CsvSource, FileSource, IdxSource, Option, Source, kinds, resolve
from charlab.errors import DataError
from test_app_pages import lab, navigation_v2, ok, open_app  # noqa: F401 - the app fixtures


class ToySource(Source):
    """Bright squares of one side per class: `toy:side=S,classes=K`."""

    title = "Toy squares"
    help = "Squares, one size per class."
    prefixes = ("toy",)
    options = (Option("side", int, 8, choices=(4, 8, 12), label="Largest square", help="in pixels of a 16-px canvas"),
               Option("classes", str, "3", choices=("2", "3"), label="Square sizes",
                      choice_labels={"2": "two sizes", "3": "three sizes"}),
               Option("tag", str, "", label="A tag", placeholder="anything"))
    menu = 60

    @classmethod
    def compose(cls, values):
        return f"toy:side={values['side']},classes={values['classes']}" + (f",tag={values['tag']}" if values["tag"] else "")

    def build(self, cfg, split, progress):
        from charlab.data.sources.pool import build_dataset, preprocess_arrays

        opts = dict(p.split("=") for p in self.arg.split(","))
        side, k = int(opts["side"]), int(opts["classes"])
        raw = np.zeros((5 * k, 16, 16), np.uint8)
        names = []
        for c in range(k):
            s = side - 2 * c
            raw[5 * c:5 * c + 5, 2:2 + s, 2:2 + s] = 255
            names += [f"sq{s}"] * 5
        images, hashes = preprocess_arrays(raw, cfg, progress, "toy")
        return build_dataset(images, names, None, [], self.text, {"part": split}, hashes=hashes)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(SOURCES._items, "toy", ToySource)  # registered for this test only
    return ToySource


def test_resolve_picks_each_kind(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "x.zip").write_bytes(b"")
    (tmp_path / "t.csv").write_text("1,2\n")
    assert type(resolve("synthetic:classes=digits")).__name__ == "SyntheticSource"
    assert isinstance(resolve("emnist:/d:letters"), IdxSource) and isinstance(resolve("mnist:/d"), IdxSource)
    assert type(resolve("digitsum:k=2")).__name__ == "DigitsumSource"
    assert isinstance(resolve(str(tmp_path)), FileSource) and isinstance(resolve(str(tmp_path / "x.zip")), FileSource)
    assert isinstance(resolve(str(tmp_path / "t.csv")), CsvSource)
    for bad, msg in (("", "no data source given"), ("   ", "no data source given"),
                     (str(tmp_path / "nope"), "not found"), (str(tmp_path / "t.csv") + "x", "not found")):
        with pytest.raises(DataError, match=msg):
            resolve(bad)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder, a .zip or a .csv"):
        resolve(str(tmp_path / "notes.txt"))


def test_every_kind_declares_what_the_sidebar_needs():
    for name, kind in kinds():
        assert kind.title and kind.options, name
        for opt in kind.options:
            assert opt.label, (name, opt.name)
            assert not opt.choices or opt.default in opt.choices or opt.default in ("", None), (name, opt.name)
        # the defaults compose to a source string the kind itself resolves to (or "" while a path is missing)
        text = kind.compose({o.name: o.default for o in kind.options})
        assert text == "" or isinstance(resolve(text), kind), (name, text)


def test_a_registered_kind_loads_counts_and_caches(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLAB_CACHE_DIR", str(tmp_path / "cache"))
    ds = load_source("toy:side=12,classes=3", DataConfig(image_size=16, crop=False))
    assert ds.classes == ["sq8", "sq10", "sq12"]
    assert ds.counts().tolist() == [5, 5, 5] and len(set(ds.hashes)) == 3
    assert load_source("toy:side=12,classes=3", DataConfig(image_size=16, crop=False)).info.get("cached")
    classes, counts, skipped = source_counts("toy:side=12,classes=3")
    assert classes == ds.classes and counts.tolist() == [5, 5, 5] and skipped == []


def test_sidebar_offers_a_new_kind_with_its_declared_options(toy, lab):
    at = open_app(lab)
    kind = at.sidebar.selectbox(key="sb_kind")
    assert "Toy squares" in kind.options  # AppTest lists a menu's options as shown
    kind.set_value("toy").run()
    ok(at)
    side = at.sidebar.select_slider(key="sb_toy_side")
    sizes = at.sidebar.selectbox(key="sb_toy_classes")
    tag = at.sidebar.text_input(key="sb_toy_tag")
    assert side.label == "Largest square" and list(side.options) == ["4", "8", "12"] and side.value == 8
    assert side.help == "in pixels of a 16-px canvas"
    assert sizes.label == "Square sizes" and sizes.value == "3" and "three sizes" in sizes.options
    assert tag.label == "A tag" and tag.placeholder == "anything"
    assert at.session_state["source"] == "toy:side=8,classes=3"
    side.set_value(12).run()
    sizes.set_value("2").run()
    at.sidebar.text_input(key="sb_toy_tag").input("mine").run()
    assert at.session_state["source"] == "toy:side=12,classes=2,tag=mine"
    at.switch_page("pages/dataset.py")
    at.run()
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "2" and metrics["Images"] == "10"
    assert "Toy squares" not in (ROOT / "ui.py").read_text()  # nothing about the kind was typed into the app
