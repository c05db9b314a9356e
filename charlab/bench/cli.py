"""CLI start-up: `runs list` and `runs show` over a folder of runs, against `python -c pass`,
`python -c "import charlab"` and `python -c "import torch"`, each a fresh process, in one run.

The run commands only read JSON files, so they must not pay for torch (about 1.4 s on the
2-core machine): `charlab/__main__.py` builds the parser of the command asked for alone, and
`charlab.runs` imports configs only where one is read. The figure checks that each command's
own `-X importtime` trace holds no torch module.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import CharlabError

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=7, help="fresh processes per command (median reported)")
    p.add_argument("--runs", type=int, default=20, help="finished runs in the listed folder")


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise CharlabError(f"{' '.join(cmd)} failed: {out.stderr.strip()[-500:]}")
    return time.perf_counter() - t


def _imports_torch(cmd: list[str]) -> bool:
    out = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    return any(line.rsplit("|", 1)[-1].strip().split(".")[0] == "torch" for line in out.stderr.splitlines())


def _fill(root: Path, n: int) -> str:
    from ..config import TrainConfig
    from ..runs import DONE, create_run, update_status

    last = None
    for k in range(n):
        last = create_run(TrainConfig(epochs=10), root, state=DONE)
        update_status(last, epoch=10, best_metrics={"val_acc": 0.5 + k / 100, "val_macro_f1": 0.4}, elapsed_s=60.0)
    return last.name


def run(opts: argparse.Namespace) -> dict:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        one = _fill(root, opts.runs)
        cmds = {
            "python_pass": [py, "-c", "pass"],
            "import_charlab": [py, "-c", "import charlab"],
            "runs_list": [py, "-m", "charlab", "runs", "list", "--root", str(root)],
            "runs_show": [py, "-m", "charlab", "runs", "show", one, "--root", str(root)],
            "import_torch": [py, "-c", "import torch"],
        }
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(opts.repeats):  # interleaved, so a change in the machine's load hits all alike
            for name, cmd in cmds.items():
                times[name].append(_wall(cmd))
        result: dict = {f"{k}_s": round(statistics.median(v), 3) for k, v in times.items()}
        result.update(runs=opts.runs, repeats=opts.repeats,
                      runs_list_imports_torch=_imports_torch(cmds["runs_list"]),
                      runs_show_imports_torch=_imports_torch(cmds["runs_show"]))
    return result
