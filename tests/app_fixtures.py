"""Builders shared by the app tests (AppTest and browser): a small checkpoint and a finished
run directory, written with charlab's own writers so the pages read them like real ones."""
from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
# Small enough that the pages load it in a second or two (10 classes × 30 train, 6 test).
SMALL_SOURCE = "synthetic:classes=digits,n=30,test_n=6"


def make_checkpoint(path: Path, source: str = SMALL_SOURCE, model: str = "kaggle_cnn", classes=None) -> Path:
    """An untrained checkpoint: the pages only need something that loads and predicts."""
    import torch

    from charlab.checkpoint import save_checkpoint
    from charlab.config import DataConfig, ModelConfig, TrainConfig
    from charlab.models import create_model

    classes = list(classes or "0123456789")
    torch.manual_seed(0)
    net = create_model(model, num_classes=len(classes), in_chans=1, image_size=(28, 28))
    cfg = TrainConfig(data=DataConfig(source=source), model=ModelConfig(name=model), epochs=3)
    save_checkpoint(path, net, cfg, classes, (28, 28), epoch=3, metrics={"val_acc": 0.5})
    return path


def make_finished_run(root: Path, checkpoint: Path, *, lr: float = 3e-3, epochs: int = 3, state: str = "done") -> Path:
    """A run directory as a finished training leaves it: config, status, metrics, best.pt."""
    from charlab.config import DataConfig, ModelConfig, TrainConfig
    from charlab.io import append_jsonl
    from charlab.runs import create_run, update_status

    cfg = TrainConfig(data=DataConfig(source=SMALL_SOURCE), model=ModelConfig(name="kaggle_cnn"), epochs=epochs, lr=lr)
    d = create_run(cfg, root, state=state)
    for e in range(1, epochs + 1):
        append_jsonl(d / "metrics.jsonl", {"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.3 + 0.15 * e,
                                           "val_loss": 2.2 / e, "val_acc": 0.25 + 0.15 * e,
                                           "val_macro_f1": 0.2 + 0.15 * e, "lr": lr})
    shutil.copy(checkpoint, d / "best.pt")
    best = {"val_acc": 0.25 + 0.15 * epochs, "val_macro_f1": 0.2 + 0.15 * epochs}
    update_status(d, state=state, epoch=epochs, best_metrics=best, best_epoch=epochs, elapsed_s=42.0)
    return d


def canvas_value(strokes: list[list[tuple[float, float]]], size: int = 280, width: int = 20) -> dict:
    """What streamlit-drawable-canvas sends back after drawing `strokes` (white on black):
    the session-state value that feeds the component in AppTest."""
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    d = ImageDraw.Draw(im)
    for pts in strokes:
        d.line([(x * size, y * size) for x, y in pts], fill=(255, 255, 255, 255), width=width, joint="curve")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}, "backgroundFit": None}


SEVEN = [[(0.25, 0.22), (0.75, 0.22), (0.45, 0.8)]]

