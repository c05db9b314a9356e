"""Export: every zoo model, an ensemble and the shipped checkpoint leave charlab as ONNX and
TorchScript files that compute what the torch Predictor computes (argmax equal, |Δp| ≤ 1e-4)
at any batch size, carry their preprocessing, and run from the README's numpy-only code."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from charlab.checkpoint import save_checkpoint
from charlab.config import DataConfig, ModelConfig, TrainConfig
from charlab.errors import CharlabError
from charlab.export import FORMATS, compare, export_bytes, export_model, exported_side, read_metadata, runner
from charlab.models import create_model, list_models
from charlab.predict import load_predictor

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4


def _squares(n: int, size: int = 28, seed: int = 0) -> torch.Tensor:
    """uint8 n×1×S×S: bright rectangles of random place and shape (inputs with distinct outputs)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    for i in range(n):
        y0, x0 = (int(v) for v in torch.randint(0, size // 2, (2,), generator=g))
        h, w = (int(v) for v in torch.randint(3, size // 2, (2,), generator=g))
        x[i, 0, y0:y0 + h, x0:x0 + w] = 255
    return x


def _checkpoint(tmp_path: Path, name: str, classes: list[str], seed: int = 0, size: int = 28) -> Path:
    """A checkpoint of `name` whose outputs differ clearly between inputs: BatchNorm statistics
    gathered on real-looking batches and a sharpened head (a fresh net's softmax is near-uniform,
    where argmax equality would rest on 1e-7 ties)."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=len(classes), image_size=size)
    model.train()
    with torch.no_grad():
        for i in range(3):
            model(_squares(32, size, seed=100 + i).float() / 255)
        head = model.head
        head.weight.mul_(20.0)
    model.eval()
    cfg = TrainConfig(data=DataConfig(image_size=size), model=ModelConfig(name=name))
    path = tmp_path / f"{name}-{seed}.pt"
    save_checkpoint(path, model, cfg, classes, (size, size))
    return path


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_round_trips(name, tmp_path):
    classes = list("abcdefgh")
    path = _checkpoint(tmp_path, name, classes)
    predictor = load_predictor(path)
    images = _squares(24, seed=1)
    for fmt in FORMATS.names():
        data = export_bytes(predictor, fmt)
        run = runner(fmt, data)
        for batch in (1, 7):  # the batch axis is dynamic: other sizes than the export's example
            got = compare(predictor, run, images, batch_size=batch)
            assert got["agreement"] == 1.0 and got["max_abs_diff"] <= TOL, (fmt, batch, got)
        probs = run(images[:5].float().numpy() / 255)
        assert probs.shape == (5, len(classes)) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_ensemble_is_one_graph_that_averages_members(tmp_path):
    a = _checkpoint(tmp_path, "charnet", list("abcd"), seed=0)
    b = _checkpoint(tmp_path, "lenet", list("dcba"), seed=1)  # same classes, another order
    ens = load_predictor(f"{a}+{b}")
    images = _squares(32, seed=2)
    ref = ens.probs(images)
    singles = [load_predictor(p).probs(images) for p in (a, b)]
    # hand-built average, b's columns reordered to a's classes: what the exported graph must equal
    expected = (singles[0] + singles[1][:, [3, 2, 1, 0]]) / 2
    assert np.abs(ref - expected).max() < 1e-6
    for fmt in FORMATS.names():
        out = tmp_path / f"ens{'.onnx' if fmt == 'onnx' else '.pt'}"
        export_model(f"{a}+{b}", fmt, out)
        run = runner(fmt, out.read_bytes())
        got = run(images.float().numpy() / 255)
        assert np.abs(got - expected).max() <= TOL
        assert (got.argmax(1) == expected.argmax(1)).all()
        meta = read_metadata(out)
        assert json.loads(meta["classes"]) == list("abcd") and len(json.loads(meta["members"])) == 2
        assert "mean of 2 members" in meta["output"]


def test_the_file_carries_the_preprocessing(tmp_path):
    path = tmp_path / "m.pt"
    model = create_model("lenet", num_classes=3, image_size=32).eval()
    cfg = TrainConfig(data=DataConfig(image_size=32, invert="yes", margin=0.1, threshold=0.5, crop=False),
                      model=ModelConfig(name="lenet"))
    save_checkpoint(path, model, cfg, ["x", "y", "z"], (32, 32))
    for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.ts")):
        meta = read_metadata(export_model(path, fmt, tmp_path / name))
        pp = json.loads(meta["preprocess"])
        assert json.loads(meta["classes"]) == ["x", "y", "z"] and json.loads(meta["input_shape"]) == [32, 32]
        assert meta["polarity"] == "yes"
        assert (pp["image_size"], pp["invert"], pp["margin"], pp["threshold"], pp["crop"]) == (32, "yes", 0.1, 0.5, False)
        assert len(pp["steps"]) >= 6 and json.loads(meta["model"])["name"] == "lenet"


def test_export_cli_and_bad_input(tmp_path, capsys):
    from charlab.__main__ import main

    path = _checkpoint(tmp_path, "lenet", list("ab"))
    out = tmp_path / "cli.onnx"
    assert main(["export", "--run", str(path), "--format", "onnx", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bytes"] == out.stat().st_size > 0 and json.loads(report["metadata"]["classes"]) == ["a", "b"]
    assert main(["export", "--run", str(tmp_path / "absent"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "no run directory or checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(CharlabError, match="valid: onnx, torchscript"):
        export_bytes(path, "tflite")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CharlabError, match="neither an ONNX file"):
        read_metadata(tmp_path / "junk.onnx")


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Export\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, "README.md has no '## Export' section"
    blocks = re.findall(r"```python\n(.*?)```", m.group(1), flags=re.S)
    assert len(blocks) == 1, "the Export section should hold one python snippet"
    return blocks[0]


def _test_images(zip_path: Path, n: int) -> list[Image.Image]:
    import zipfile
    import io

    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(x for x in zf.namelist() if x.endswith(".png"))[::7][:n]
        return [Image.open(io.BytesIO(zf.read(x))) for x in names]


def _plain_ink_copy(path: Path, tmp_path: Path) -> Path:
    """The checkpoint with its ink kept as drawn (stroke_norm off: the README's code does not
    redraw strokes), weights and every other preprocessing step unchanged."""
    from dataclasses import replace

    from charlab.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    if getattr(ck.config.data, "stroke_norm", None) is None:
        return path
    cfg = replace(ck.config, data=replace(ck.config.data, stroke_norm=None))
    out = tmp_path / "plain.pt"
    save_checkpoint(out, ck.model, cfg, ck.classes, ck.input_shape)
    return out


def test_readme_snippet_prepares_and_predicts_like_charlab(chars74k_test_zip, tmp_path, monkeypatch):
    """The README's numpy + Pillow + onnxruntime code, run verbatim on real scans: the same
    pixels as charlab's preprocessing and the same probabilities as the torch Predictor."""
    predictor = load_predictor(_plain_ink_copy(ROOT / "checkpoints" / "default.pt", tmp_path))
    monkeypatch.chdir(tmp_path)
    export_model(predictor, "onnx", "model.onnx")
    scans = _test_images(chars74k_test_zip, 40)
    scans[0].save("letter.png")
    ns: dict = {}
    exec(compile(_readme_snippet(), "README.md#export", "exec"), ns)
    assert ns["probs"].shape == (predictor.num_classes,)
    x, side = predictor.prepare_inputs([Image.open("letter.png")])
    want = predictor.probs(x, side=side)[0]
    assert np.abs(ns["probs"] - want).max() <= TOL
    assert (ns["side"] is None) == (predictor.side_inputs is None)  # the shipped default reads its ink's box
    # more than Chars74K's dark-on-white scans: light ink on dark, grey paper, a small drawing
    rng = np.random.default_rng(0)
    grey = np.full((90, 60), 170, np.uint8)
    grey[20:70, 25:32] = 40
    dark = np.zeros((50, 80), np.uint8)
    dark[10:40, 30:36] = 255
    noisy = np.clip(rng.normal(230, 8, (300, 200)), 0, 255).astype(np.uint8)
    noisy[50:250, 90:110] = 20
    extra = [Image.fromarray(grey), Image.fromarray(dark), Image.fromarray(noisy), Image.fromarray(grey).convert("RGB")]
    for img in scans + extra:
        image, side = ns["prepare"](img)
        want_image, want_side = predictor.prepare_side(img)
        assert np.array_equal(image, want_image)
        if want_side is None:
            assert side is None
        else:
            np.testing.assert_allclose(side, exported_side(predictor, want_side[None])[0], rtol=1e-5, atol=1e-6)
    if predictor.side_optional:  # no page (a photo): zeros, flag included, read as charlab reads the pixels alone
        x, _ = predictor.prepare_inputs([Image.open("letter.png")])
        bare = ns["session"].run(["probs"], {"image": x.numpy(), "side": np.zeros((1, ns["side_spec"]["dim"]), np.float32)})[0]
        assert np.abs(bare[0] - predictor.probs(x)[0]).max() <= TOL
        assert np.abs(bare[0] - ns["probs"]).max() > 1e-4  # and the page did change the answer


def test_chars74k_test_split_agrees(chars74k_test_zip):
    """The shipped model on the whole Chars74K test split: ONNX and TorchScript vs torch."""
    from charlab.data import load_source

    predictor = load_predictor(ROOT / "checkpoints" / "default.pt")
    test = load_source(str(chars74k_test_zip), predictor.data_config_for(str(chars74k_test_zip)))
    assert len(test) > 900
    for fmt in FORMATS.names():
        got = compare(predictor, runner(fmt, export_bytes(predictor, fmt)), test.images, side=test.side)
        assert got["n"] == len(test) and got["agreement"] == 1.0 and got["max_abs_diff"] <= TOL, (fmt, got)


def test_runs_and_draw_pages_offer_the_onnx_file(tmp_path, monkeypatch):
    """The pages' Download ONNX button: on the Runs page for the selected run, on the Draw page for
    the chosen model; what a click downloads is an ONNX file of that model with its classes."""
    from streamlit.testing.v1 import AppTest
    from streamlit.runtime.pages_manager import PagesManager

    import ui_export
    from app_fixtures import make_checkpoint, make_finished_run

    init = PagesManager.__init__  # as tests/test_app_pages.py: no legacy pages-folder mode in AppTest

    def v2_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", v2_init)
    ckpt = make_checkpoint(tmp_path / "checkpoints" / "default.pt")
    run = make_finished_run(tmp_path / "runs", ckpt)
    for page in ("runs", "draw"):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["runs_root"] = str(tmp_path / "runs")
        at.session_state["checkpoints_dir"] = str(ckpt.parent)
        at.session_state["sb_synthetic_classes"] = "digits"
        at.session_state["sb_synthetic_n"] = 30
        at.run()
        at.switch_page(f"pages/{page}.py")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        buttons = [b for b in at.get("download_button") if "Download ONNX" in str(b.proto.label)]
        assert len(buttons) == 1, page
    # the bytes behind the button, as its callable produces them on a click
    data = ui_export.exported_model(str(run), "onnx", ("stamp",))
    session = runner("onnx", data)
    x = _squares(3).float().numpy() / 255
    ref = load_predictor(run).probs(x)
    assert np.abs(session(x) - ref).max() <= TOL
    assert ui_export.file_stem(str(run)) == run.name and ui_export.file_stem(f"{ckpt}+{ckpt}") == "ensemble-2"
