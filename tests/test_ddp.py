"""`python -m charlab train` under torchrun: 2 CPU processes (gloo) against one process on the
same data; the metrics agree within tolerance, and only rank 0 writes the run directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from charlab import runs
from charlab.config import TrainConfig, to_dict
from charlab.training import fit

ROOT = Path(__file__).resolve().parents[1]


def _shapes(root: Path) -> str:
    """4 classes × 40 PNGs, dark ink on white: a horizontal bar, a vertical bar, a plus, a box
    (shapes, because preprocessing crops to the ink and would erase a mere position)."""
    rng = np.random.default_rng(0)
    for c in range(4):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(40):
            img = np.full((32, 32), 255, np.uint8)
            a, b, t = 6 + rng.integers(0, 3), 24 + rng.integers(0, 3), 3 + rng.integers(0, 2)
            if c in (0, 2):
                img[15:15 + t, a:b] = 0
            if c in (1, 2):
                img[a:b, 15:15 + t] = 0
            if c == 3:
                img[a:b, a:a + t] = img[a:b, b - t:b] = img[a:a + t, a:b] = img[b - t:b, a:b] = 0
            Image.fromarray(img).save(root / f"class{c}" / f"{i:03d}.png")
    return str(root)


@pytest.mark.slow  # ~20 s idle (three torch processes start), ~60 s on a loaded 2-core machine
def test_two_gloo_processes_match_one_process(tmp_path):
    source = _shapes(tmp_path / "bars")
    cfg = TrainConfig(epochs=3, batch_size=16, lr=3e-3, patience=0, device="cpu", label_smoothing=0.0)
    cfg.data.source, cfg.model.name = source, "lenet"
    cfg.model.kwargs = {"dropout": 0.0}  # dropout masks are drawn per rank; keep the comparison about DDP
    (tmp_path / "config.json").write_text(json.dumps(to_dict(cfg)))

    single = fit(cfg, tmp_path / "single")

    run_dir = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "charlab", "train", "--config", str(tmp_path / "config.json"), "--run-dir", str(run_dir),
                        "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:] + p.stdout[-2000:]
    status = runs.read_status(run_dir)
    assert status["state"] == "done" and status["world_size"] == 2
    rows = runs.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # one writer: no row twice
    for mine, theirs in zip(single.history, rows):
        # BatchNorm sees 8-image shards instead of 16-image batches: close, not equal (measured: 0.069 vs 0.125)
        assert abs(mine["train_loss"] - theirs["train_loss"]) < 0.3 * mine["train_loss"] + 0.1, (mine, theirs)
        assert abs(mine["val_loss"] - theirs["val_loss"]) < 0.3 * mine["val_loss"] + 0.1, (mine, theirs)
        assert abs(mine["val_acc"] - theirs["val_acc"]) <= 0.15, (mine, theirs)
    assert rows[-1]["val_acc"] > 0.5  # both learned (chance 0.25)
