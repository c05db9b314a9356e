"""DDP on this machine: the same training run as 1 process and as 2 (torchrun), alternating.

Each round trains one config with `python -m charlab train` and then with
`torchrun --nproc_per_node 2 -m charlab train` (same global batch, so the same optimiser steps),
and reads the run directories: training seconds (the epochs' own time, from metrics.jsonl,
without process start and data loading), wall seconds of the whole command, and the final
validation accuracy. Rounds alternate so load from other processes hits both alike; medians
are reported. The default data is Chars74K's trainPart1.zip (synthetic data where it is absent).

What to expect on 2 cores: one process already uses both cores through its 2 intra-op threads;
two processes get one thread each and add an all-reduce of the gradients (and of the BatchNorm
statistics) per step, so a speed-up is not a given.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import CHARS74K


def add_arguments(p: argparse.ArgumentParser) -> None:
    zip_ = CHARS74K / "trainPart1.zip"
    p.add_argument("--source", default=str(zip_) if zip_.exists() else "synthetic",
                   help="data source (default: Chars74K trainPart1.zip, else synthetic)")
    p.add_argument("--model", default="charnet", help="default charnet (the default recipe's)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    p.add_argument("--batch-size", type=int, default=64, help="GLOBAL batch (default 64, the default recipe's)")
    p.add_argument("--rounds", type=int, default=2, help="alternating 1-process / 2-process rounds (default 2)")


def _train(cmd: list[str], cfg_path: Path, run_dir: Path) -> dict:
    from ..runs import read_metrics

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    t = time.perf_counter()
    p = subprocess.run(cmd + ["-m", "charlab", "train", "--config", str(cfg_path), "--run-dir", str(run_dir), "--json"],
                       env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        from ..errors import CharlabError

        raise CharlabError(f"training failed ({' '.join(cmd)}): {p.stderr.strip().splitlines()[-1:]}")
    rows = [r for r in read_metrics(run_dir) if r.get("split", "train") == "train"]
    return {"train_s": sum(r["epoch_seconds"] for r in rows), "wall_s": wall, "val_acc": rows[-1].get("val_acc")}


def run(args: argparse.Namespace) -> dict:
    from ..config import TrainConfig, to_dict

    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, patience=0, device="cpu")
    cfg.data.source, cfg.model.name = args.source, args.model
    root = Path(tempfile.mkdtemp(prefix="charlab-bench-ddp-"))
    cfg_path = root / "train_config.json"  # a --config input, not a run file
    cfg_path.write_text(json.dumps(to_dict(cfg)))
    one = [sys.executable]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    runs: dict[str, list[dict]] = {"1 process": [], "2 processes": []}
    load0 = os.getloadavg()[0]
    try:
        _train(one, cfg_path, root / "warm")  # fills the data cache, so no round pays for decoding
        for k in range(args.rounds):
            runs["1 process"].append(_train(one, cfg_path, root / f"one{k}"))
            runs["2 processes"].append(_train(two, cfg_path, root / f"two{k}"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {name: {key: round(statistics.median(r[key] for r in rs), 3) for key in ("train_s", "wall_s", "val_acc")}
           for name, rs in runs.items()}
    return {"source": args.source, "model": args.model, "epochs": args.epochs, "global_batch": args.batch_size,
            "rounds": args.rounds, **med,
            "speedup_train_s": round(med["1 process"]["train_s"] / med["2 processes"]["train_s"], 2),
            "speedup_wall_s": round(med["1 process"]["wall_s"] / med["2 processes"]["wall_s"], 2),
            "all_rounds": runs, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_avg_start": round(load0, 2), "load_avg_end": round(os.getloadavg()[0], 2),
            "date": time.strftime("%Y-%m-%d")}
