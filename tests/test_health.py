"""charlab.health on real handwriting: planted problems in a copy of Chars74K are found with
precision and recall >= 0.9 per kind; the real test zip against the real train zip; the chunked
near-duplicate search against the all-pairs loop; tiny and odd inputs; the CLI's JSON."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from charlab import health
from charlab.config import DataConfig
from charlab.data import CharDataset, load_source
from charlab.errors import CharlabError

ROOT = Path(__file__).resolve().parents[1]
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CLASSES = [f"Sample{i:03d}" for i in range(1, 21)]  # 0-9 and A-J
ALIEN = "ЖΨשλЩξ"  # Cyrillic, Greek and Hebrew letters (DejaVu Sans has them)


def _predictor():
    from charlab.predict import load_predictor

    # The shipped default model (trained on Chars74K), which the page and the CLI use: FAR_FACTOR
    # is calibrated with its embedding (few far flags on clean Chars74K, the planted aliens found)
    return load_predictor(ROOT / "checkpoints" / "default.pt")


def _png(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def _copies(im: Image.Image) -> list[tuple[str, bytes]]:
    """The planted near-copies: resized, shifted, re-encoded (JPEG), resized and re-encoded."""
    w, h = im.size
    shifted = Image.new("L", (w + 120, h + 90), 255)
    shifted.paste(im, (100, 70))
    return [("resized.png", _png(im.resize((int(w * 0.6), int(h * 0.6)), Image.Resampling.BILINEAR))),
            ("shifted.png", _png(shifted)),
            ("reenc.jpg", _png(im, "JPEG", quality=70)),
            ("small.jpg", _png(im.resize((int(w * 0.8), int(h * 0.8))), "JPEG", quality=80))]


def _alien(kind: int, rng) -> Image.Image:
    """Not a character of this alphabet: a glyph of another script, or noise."""
    im = Image.new("L", (1200, 900), 255)
    if kind < len(ALIEN):
        d = ImageDraw.Draw(im)
        d.text((350, 150), ALIEN[kind], fill=0, font=ImageFont.truetype(FONT, 520))
        return im
    return Image.fromarray(rng.integers(0, 256, (900, 1200), dtype=np.uint8))


@pytest.fixture(scope="module")
def planted(tmp_path_factory, chars74k_train_zip, chars74k_test_zip):
    """Chars74K train/test subsets (20 classes) rewritten as zips, with problems planted and known."""
    rng = np.random.default_rng(0)
    tmp = tmp_path_factory.mktemp("planted")
    truth = {"pairs": set(), "leaks": set(), "blank": set(), "inverted": set(), "far": set()}
    entries = {"train": {}, "test": {}}
    for part, src, per_class in (("train", chars74k_train_zip, 10), ("test", chars74k_test_zip, 4)):
        with zipfile.ZipFile(src) as z:
            for cls in CLASSES:
                names = sorted(n for n in z.namelist() if f"/{cls}/" in n and n.endswith(".png"))[:per_class]
                for n in names:
                    entries[part][f"{part}/{cls}/{Path(n).name}"] = z.read(n)
    train_names = sorted(entries["train"])
    pick = [train_names[i] for i in rng.choice(len(train_names), 22, replace=False)]
    # near and exact copies: 5 within train, 5 from train into test, 2 exact each way
    for k, orig in enumerate(pick[:10]):
        im = Image.open(io.BytesIO(entries["train"][orig])).convert("L")
        name, data = _copies(im)[k % 4]
        part = "train" if k < 5 else "test"
        cls = orig.split("/")[1]
        copy = f"{part}/{cls}/copy{k}-{name}"
        entries[part][copy] = data
        truth["pairs"].add(frozenset((orig, copy)))
        if part == "test":
            truth["leaks"].add((copy, orig))
    for k, orig in enumerate(pick[10:14]):
        part = "train" if k < 2 else "test"
        copy = f"{part}/{orig.split('/')[1]}/exact{k}.png"
        entries[part][copy] = entries["train"][orig]
        truth["pairs"].add(frozenset((orig, copy)))
        if part == "test":
            truth["leaks"].add((copy, orig))
    # inverted: white ink on black, replacing the original (not a copy)
    for orig in pick[14:19]:
        im = Image.open(io.BytesIO(entries["train"][orig])).convert("L")
        entries["train"][orig] = _png(Image.fromarray(255 - np.asarray(im)))
        truth["inverted"].add(orig)
    # blank and near-empty pages
    for k in range(4):
        im = Image.new("L", (1200, 900), 255)
        if k == 3:
            ImageDraw.Draw(im).ellipse((600, 450, 606, 456), fill=0)  # one speck
        name = f"train/{CLASSES[k]}/blank{k}.png"
        entries["train"][name] = _png(im, "PNG") if k != 2 else _png(im, "JPEG", quality=90)
        truth["blank"].add(name)
    for k in range(12):  # six letters of other alphabets, six noise images
        name = f"train/{CLASSES[k + 4]}/alien{k}.png"
        entries["train"][name] = _png(_alien(k, rng))
        truth["far"].add(name)
    paths = {}
    for part in ("train", "test"):
        paths[part] = tmp / f"{part}Part1.zip"
        with zipfile.ZipFile(paths[part], "w") as z:
            for name, data in sorted(entries[part].items()):
                z.writestr(name, data)
    return paths, truth


def _pr(found: set, true: set) -> tuple[float, float]:
    hit = len(found & true)
    return (hit / len(found) if found else 1.0), (hit / len(true) if true else 1.0)


def test_planted_problems_are_found(planted, tmp_path):
    paths, truth = planted
    pred = _predictor()
    cfg = pred.data_config_for(str(paths["train"]))
    train = load_source(str(paths["train"]), cfg, split="train")
    test = load_source(str(paths["test"]), cfg, split="train")
    rep = health.check({"train": train, "test": test}, pred, cache_dir=tmp_path)
    found_pairs = {frozenset((a, b)) for g in rep.duplicates for a in g["paths"] for b in g["paths"] if a < b}
    kinds = {
        "duplicates": (found_pairs, truth["pairs"]),
        "leaks": ({(r.test, r.train) for r in rep.leaks.itertuples()}, truth["leaks"]),
        **{k: (set(rep.outliers.loc[rep.outliers["kind"] == k, "path"]), truth[k]) for k in ("blank", "inverted", "far")},
    }
    scores = {k: _pr(*v) for k, v in kinds.items()}
    report = {k: (f"P {p:.2f} R {r:.2f}", sorted(map(str, kinds[k][0] ^ kinds[k][1]))[:6]) for k, (p, r) in scores.items()}
    print("\nplanted:", {k: v[0] for k, v in report.items()})
    for k, (p, r) in scores.items():
        assert p >= 0.9 and r >= 0.9, f"{k}: precision {p:.2f}, recall {r:.2f}; all: {report}"
    exact = [g for g in rep.duplicates if g["kind"] == "exact"]
    assert len(exact) == 4 and all(any("exact" in p for p in g["paths"]) for g in exact)
    assert {tuple(g["splits"]) for g in exact} == {("train",), ("test", "train")}
    # the leak message names the count the way the page and the CLI print it
    assert rep.summary_lines()[0] == f"{len(truth['leaks'])} of {len(test)} test images have a near-copy in train"
    # a second call is served from the cache and says the same
    again = health.check({"train": train, "test": test}, pred, cache_dir=tmp_path)
    assert again.from_cache and again.to_dict() == rep.to_dict()


def test_real_chars74k_test_zip_against_its_train_zip(chars74k_train_zip, chars74k_test_zip, tmp_path):
    """The real figure, whatever it is, with every pair shown: printed, and each pair really close;
    and at most 1% of the clean images far from every class."""
    pred = _predictor()
    cfg = health.prepared_for(DataConfig(source=str(chars74k_train_zip)), pred)  # the data as the app's Dataset page loads it
    train = load_source(str(chars74k_train_zip), cfg, split="train")
    test = load_source(str(chars74k_test_zip), cfg, split="train")
    rep = health.check({"train": train, "test": test}, pred, method="pca", cache_dir=tmp_path)
    assert rep.meta["embedding"] == "model"  # not the pixel fallback: FAR_FACTOR is calibrated on the model's
    line = rep.summary_lines()[0]
    print(f"\nChars74K: {line}")
    for r in rep.leaks.itertuples():
        print(f"  {r.test} <- {r.train} ({r.distance:.4f})")
    assert line.endswith(f"of {len(test)} test images have a near-copy in train")
    assert int(line.split()[0]) == len(rep.leaks) < len(test) // 10
    assert (rep.leaks["distance"] <= health.NEAR_THRESHOLD).all()
    assert all(t.startswith("test/") and o.startswith("train/") for t, o in zip(rep.leaks["test"], rep.leaks["train"]))
    # clean real writing is rarely "far from every class" (unusual hands are, now and then)
    far = rep.counts()["far"]
    print(f"  far from every class: {far} of {rep.n} ({far / rep.n:.2%})")
    assert far <= 0.01 * rep.n
    # no exact copies between the zips: no shared content hash
    assert not set(train.hashes) & set(test.hashes) or any(d == 0 for d in rep.leaks["distance"])


def test_chunked_near_pairs_match_the_all_pairs_loop():
    rng = np.random.default_rng(1)
    base = rng.random((300, 64)).astype(np.float32) * 0.05
    x = np.concatenate([base, base[:40] + rng.normal(0, 0.001, (40, 64)).astype(np.float32)])  # 40 planted pairs
    i, j, d = health.near_pairs(x, 0.02)
    assert {(int(a), int(b)) for a, b in zip(i, j)} == health.near_pairs_bruteforce(x, 0.02)
    assert {(k, 300 + k) for k in range(40)} <= set(zip(i.tolist(), j.tolist()))
    assert np.allclose(d, np.linalg.norm(x[i] - x[j], axis=1), atol=1e-5)
    # across two sets
    a, b, _ = health.near_pairs(x[:300], 0.02, x[300:])
    assert {(int(p), int(q)) for p, q in zip(a, b)} == {(k, k) for k in range(40)}
    # exact k-NN against numpy
    idx, dist = health.knn(x[:100], 3)
    full = np.linalg.norm(x[:100, None] - x[None, :100], axis=2)
    np.fill_diagonal(full, np.inf)
    assert np.allclose(np.sort(full, 1)[:, :3], dist, atol=1e-5)



@pytest.mark.parametrize("sizes", [(60, 60, 60, 60), (400, 3, 50, 1, 90)], ids=["equal", "unequal"])
def test_far_scores_and_their_neighbours_match_the_full_distance_matrix(sizes):
    """The one-pass scan (classes padded into pieces, a big class split over several) against the
    definition computed from the whole N×N matrix: the mean distance to each class's m nearest,
    the k nearest overall, and the score built from them."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    labels[rng.random(len(labels)) < 0.03] = -1  # blanks: neighbours, never a class
    x = (rng.normal(size=(len(labels), 6)) + labels[:, None] * 0.7).astype(np.float32)
    far, idx, dist = health.far_scores(x, labels, m=5, k=10)
    full = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(full, np.inf)
    assert np.allclose(dist, np.sort(full, 1)[:, :10], atol=1e-4)
    assert np.allclose(full[np.arange(len(x))[:, None], idx], dist, atol=1e-4)  # the indices name those rows
    classes = np.unique(labels)
    pad = np.full((len(x), 5), np.inf)  # a class of fewer than 5 has only that many to average
    near = np.stack([np.concatenate([np.sort(full[:, labels == c], 1), pad], 1)[:, :5] for c in classes], 2)  # N×5×C
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a one-image class has nobody else to average
        near = np.nan_to_num(np.nanmean(np.where(np.isinf(near), np.nan, near), 1), nan=np.inf)  # N×C
    real, member = classes >= 0, labels >= 0
    own = near[np.arange(len(x)), np.searchsorted(classes, labels)]
    ok = member & np.isfinite(own)
    g = np.median(own[ok])
    scale = np.sqrt(np.array([np.median(own[ok & (labels == c)]) if (ok & (labels == c)).any() else g
                              for c in classes[real]]) * g)
    knn_part = (near[:, real] / scale).min(1)
    mu = np.stack([x[labels == c].mean(0) for c in classes[real]])
    cen = np.linalg.norm(x[:, None] - mu[None], axis=2)
    spread = np.array([np.median(cen[labels == c, i]) for i, c in enumerate(classes[real])])
    want = np.sqrt(knn_part * (cen / np.maximum(spread, 1e-12)).min(1))  # a one-image class: spread 0
    assert np.allclose(far, want, rtol=1e-4, atol=1e-5)

def _tiny(n: int, classes: int) -> CharDataset:
    g = torch.Generator().manual_seed(0)
    imgs = (torch.rand(n, 1, 28, 28, generator=g) > 0.8).to(torch.uint8) * 255
    return CharDataset(images=imgs, labels=torch.arange(n) % classes, classes=[str(c) for c in range(classes)])


@pytest.mark.parametrize("n,classes", [(1, 1), (2, 1), (30, 1), (30, 3)])
def test_tiny_and_single_class_sources_get_a_result(n, classes, tmp_path):
    rep = health.check({"train": _tiny(n, classes)}, None, embedding="pixels", cache_dir=tmp_path)
    assert rep.n == n and len(rep.table) == n and np.isfinite(rep.table[["x", "y"]].to_numpy()).all()
    assert rep.summary_lines()[0] == "no test split: nothing can leak"
    assert rep.lookalikes == [] if classes == 1 else True


def test_a_big_source_maps_a_sample_holding_every_flagged_image(tmp_path, monkeypatch):
    """Beyond MAP_POINTS images the map lays out (and the page draws) a sample: all flagged
    images and random others; the checks still cover every image."""
    monkeypatch.setattr(health, "MAP_POINTS", 120)
    ds = load_source("synthetic:classes=digits,n=40,test_n=2", DataConfig(source="synthetic"), split="train")
    imgs = ds.images.clone()
    imgs[:5] = 0  # five blanks
    ds = CharDataset(images=imgs, labels=ds.labels, classes=ds.classes)
    rep = health.check({"train": ds}, None, embedding="pixels", method="umap", cache_dir=tmp_path)
    t = rep.table
    rows = rep.map_rows()
    assert rep.n == 400 and len(rows) == 120 and np.all(np.diff(rows) > 0)
    assert set(np.flatnonzero(t["flag"] != "ok")) <= set(rows) and {0, 1, 2, 3, 4} <= set(rows)
    xy = t[["x", "y"]].to_numpy()
    assert np.isfinite(xy[rows]).all() and np.isnan(np.delete(xy, rows, 0)).all()
    assert np.isfinite(t[["pca_x", "pca_y"]].to_numpy()).all()  # the PCA map keeps every image
    assert health.check({"train": ds}, None, embedding="pixels", method="umap", cache_dir=tmp_path).map_rows().tolist() == rows.tolist()


def test_bad_names_and_empty_input_are_clear_errors():
    with pytest.raises(CharlabError, match="valid: model, pixels"):
        health.check({"train": _tiny(3, 1)}, None, embedding="bogus")
    with pytest.raises(CharlabError, match="valid: pca, umap"):
        health.check({"train": _tiny(3, 1)}, None, method="tsne")
    with pytest.raises(CharlabError, match="no images"):
        health.check({"train": None, "test": None}, None)


def test_model_embedding_is_the_penultimate_layer_and_cached(tmp_path):
    pred = _predictor()
    ds = load_source("synthetic:classes=digits,n=6,test_n=2", health.prepared_for(DataConfig(source="synthetic"), pred),
                     split="train")
    x, probs = health.embed(ds, pred, "model", cache_dir=tmp_path)
    first = pred.models[0].eval()  # an ensemble's members side by side: the first member's come first
    side = first.side_dim and first.side_net(first._side_vector(None, len(ds), torch.zeros(1)))  # N×32: no page
    dim = first.head.in_features - (side.shape[1] if first.side_dim else 0)  # its image features only
    assert x.shape == (len(ds), dim * len(pred.models))
    with torch.inference_mode():
        feats = torch.from_numpy(x[:, :dim])
        logits = first.head(torch.cat([feats, side], 1) if first.side_dim else feats)  # the head gives the logits
        want = torch.softmax(first(ds.images.float() / 255), 1)
    t = float(getattr(first, "temperature", 1.0))  # the model divides its logits by its temperature
    assert np.allclose(torch.softmax(logits.float() / t, 1).numpy(), want.numpy(), atol=1e-4)
    assert np.allclose(probs, pred.predict_dataset(ds), atol=1e-5)
    assert len(list(tmp_path.glob("embed-*.npz"))) == 1
    x2, _ = health.embed(ds, pred, "model", cache_dir=tmp_path)
    assert np.array_equal(x, x2)



def test_model_embedding_ignores_other_threads_predicting_with_the_same_model():
    """The app shares one loaded model between sessions: a Draw-page prediction in another thread
    while the Dataset page embeds must neither add rows to the features nor change them."""
    import threading

    pred = _predictor()
    imgs = (torch.rand(1500, 1, *pred.input_shape, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    alone, _ = health.model_features(imgs, pred)
    stop, errors = threading.Event(), []

    def draw_page():
        while not stop.is_set():
            try:
                pred.probs(imgs[:3])
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

    t = threading.Thread(target=draw_page)
    t.start()
    try:
        shared, _ = health.model_features(imgs, pred, batch_size=128)
    finally:
        stop.set()
        t.join()
    assert not errors and shared.shape == alone.shape
    np.testing.assert_allclose(shared, alone, atol=1e-5)

def test_cli_json_has_duplicates_leaks_and_outliers(planted, tmp_path):
    paths, truth = planted
    env = {"CHARLAB_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "GOMP_SPINCOUNT": "0"}
    out = subprocess.run([sys.executable, "-m", "charlab", "data", "health", "--source", str(paths["train"]),
                          "--test-source", str(paths["test"]), "--embedding", "pixels", "--map", "pca", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert {"duplicates", "leaks", "outliers"} <= set(doc)
    assert all({"paths", "kind", "splits"} <= set(g) and g["kind"] in ("exact", "near") for g in doc["duplicates"])
    assert {(r["test"], r["train"]) for r in doc["leaks"]} >= {t for t in truth["leaks"] if "exact" in t[0]}
    assert {o["path"] for o in doc["outliers"] if o["kind"] == "blank"} == truth["blank"]
    bad = subprocess.run([sys.executable, "-m", "charlab", "data", "health", "--source", str(paths["train"]),
                          "--embedding", "bogus"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode == 2 and "valid: model, pixels" in bad.stderr and "Traceback" not in bad.stderr


def test_data_for_the_model_embedding_is_loaded_as_the_model_prepares_it(tmp_path):
    """A 32×32 model cannot embed 28×28 crops: the Dataset page and the CLI load their data with the
    model's preprocessing (the source, labels and split kept), where check() alone would fall back
    to the pixel embedding."""
    pred = _predictor()
    asked = DataConfig(source="synthetic", image_size=pred.input_shape[0] - 4, crop=not pred.data_config.crop,
                       val_fraction=0.3, seed=7)
    got = health.prepared_for(asked, pred)
    assert got.preprocessing() == pred.data_config.preprocessing()
    assert (got.source, got.val_fraction, got.seed, got.strokes) == ("synthetic", 0.3, 7, 0)  # not its training extras
    assert len(load_source("synthetic:n=3", got, split="train"))  # page-less: read by the pixels alone, not refused
    ds = load_source("synthetic:n=3", asked, split="train")
    assert "pixel embedding" in " ".join(health.check({"train": ds}, pred, method="pca", cache_dir=tmp_path).meta["notes"])
