"""The accuracy benchmark's own pieces: the case-insensitive metric on hand-computed cases, the
class restriction the balancing/transfer tables use, the 120-s snapshot callback, and the
long-tail 36-class subset cut from the real Chars74K zip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from charlab.bench.accuracy import Snapshot, case_insensitive_accuracy, lookalike_index, restrict_classes
from charlab.data import CharDataset


def test_lookalike_groups_by_hand():
    classes = ["0", "1", "A", "C", "I", "O", "c", "l", "o"]
    g = lookalike_index(classes)
    # 0/O/o share a group, 1/I/l share one, c/C share one, A stands alone
    assert g[0] == g[5] == g[8] and g[1] == g[4] == g[7] and g[3] == g[6]
    assert len(set(g.tolist())) == 4
    y_true = [3, 6, 0, 2, 1, 2]  # C c 0 A 1 A
    y_pred = [6, 3, 8, 2, 2, 3]  # c C o A A C  -> exact 1/6, look-alike 4/6
    assert case_insensitive_accuracy(y_true, y_pred, classes) == pytest.approx(4 / 6)
    g = lookalike_index(["1", "I", "i", "l", "x"])  # 1Il and iI share I: one group of four
    assert g.tolist() == [0, 0, 0, 0, 4]


def test_restrict_classes_relabels_in_the_given_order():
    ds = CharDataset(torch.zeros(6, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 2, 2, 1, 0]), ["a", "b", "c"])
    sub = restrict_classes(ds, ["c", "a"])
    assert sub.classes == ["c", "a"] and sub.labels.tolist() == [1, 0, 0, 1]


def test_snapshot_copies_the_weights_once_past_its_time():
    model = torch.nn.Linear(2, 2)
    snap = Snapshot(0.0, clock="wall")
    snap.on_batch_end(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    snap.on_batch_end(model)  # later batches do not overwrite the snapshot
    assert snap.taken_at["batch"] == 1
    assert not torch.equal(snap.state["weight"], model.weight)
    never = Snapshot(1e9, clock="cpu")
    never.on_batch_end(model)
    assert never.state is None


def test_longtail_subset_of_chars74k(chars74k_train_zip):
    from charlab.bench.balancing import CLASSES36, longtail_splits

    splits, counts = longtail_splits(chars74k_train_zip, seed=0)
    assert splits.train.classes == CLASSES36 and splits.test.classes == CLASSES36
    assert (counts == 1).sum() == 1 and counts.max() == 40 and (counts <= 10).sum() >= 12
    got = np.bincount(np.concatenate([splits.train.labels.numpy(), splits.val.labels.numpy()]), minlength=36)
    assert got.tolist() == counts.tolist()  # exactly the profile's counts, drawn from the real images
    assert np.bincount(splits.test.labels.numpy(), minlength=36).tolist() == [15] * 36


def write_shape_zips(folder, per_class: int) -> None:
    """trainPart1.zip and testPart1.zip in `folder`, Chars74K-shaped: pages of 1200×900 with an L,
    a V and a T drawn `per_class` times each, shifted and thickened a little every time."""
    import zipfile

    from PIL import Image, ImageDraw

    shapes = {"L": [(500, 250), (500, 650), (750, 650)], "V": [(450, 250), (600, 650), (750, 250)],
              "T": [(450, 250), (750, 250), (600, 250), (600, 650)]}
    for part in ("trainPart1", "testPart1"):
        with zipfile.ZipFile(folder / f"{part}.zip", "w") as zf:
            for label, pts in shapes.items():
                for i in range(per_class):
                    im = Image.new("RGB", (1200, 900), "white")
                    ImageDraw.Draw(im).line([(x + 30 * i, y) for x, y in pts], fill="black", width=12 + 6 * i)
                    im.save(folder / "tmp.png")
                    zf.write(folder / "tmp.png", f"{part}/{label}/{i}.png")


def test_bench_strokes_measures_a_checkpoint_on_images_and_their_stroke_redrawing(tmp_path, monkeypatch):
    """`bench strokes --checkpoints`: the figures are the checkpoint's own predictions on the test
    zip's images and on the same images redrawn as canvas strokes, computed here by hand."""
    from pathlib import Path

    from charlab.bench.strokes import measure_checkpoint
    from charlab.data import align_classes, load_source
    from charlab.data.strokes import PEN_PX, stroke_dataset
    from charlab.predict import load_predictor

    monkeypatch.setenv("CHARLAB_CACHE_DIR", str(tmp_path / "cache"))
    write_shape_zips(tmp_path, 3)
    ref = str(Path(__file__).resolve().parents[1] / "checkpoints" / "synthetic.pt")
    got = measure_checkpoint(ref, tmp_path / "trainPart1.zip", PEN_PX)
    pred = load_predictor(ref)
    cfg = pred.data_config_for(str(tmp_path / "trainPart1.zip"))
    test = align_classes(load_source(str(tmp_path / "trainPart1.zip"), cfg, split="test"), pred.classes)
    strokes = stroke_dataset(test, cfg, PEN_PX)
    assert got["n_test"] == 9 and not torch.equal(strokes.images, test.images)
    for key, ds in (("images", test), ("strokes", strokes)):
        want = float((pred.predict_dataset(ds).argmax(1) == ds.labels.numpy()).mean())
        assert got[key]["top1"] == pytest.approx(want, abs=1e-4)
