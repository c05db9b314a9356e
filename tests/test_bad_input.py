"""The bad-input catalogue: every user mistake a command can meet gets one clear line on stderr,
a non-zero exit, no traceback, and touches no file outside the command's own output.

Each case runs `python -m charlab …` in process (the same `main` the module runs), inside a
small world of files: a finished run, a checkpoint, a user's folder, broken inputs. The world is
fingerprinted before and after every case, so a command that writes where it should not, or
deletes what it should not, fails here.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app_fixtures import ROOT, make_checkpoint, make_finished_run
from charlab.__main__ import main

TINY = "synthetic:classes=digits,n=12,test_n=2"
_PROGRESS = re.compile(r"\d+%\|")  # a progress bar's redraw, not a message
QUICK = ["--epochs", "1", "--limit-batches", "1"]  # a case that wrongly starts training ends fast


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("world")
    ckpt = make_checkpoint(w / "model.pt")
    runs = w / "runs"
    make_finished_run(runs, ckpt)
    # a finished run whose status.json became unreadable (a disk error, a bad editor save)
    broken_status = make_finished_run(runs, ckpt)
    (broken_status / "status.json").write_text("{not json")
    # a run whose config.json is corrupt
    broken_config = make_finished_run(runs, ckpt, state="interrupted")
    (broken_config / "config.json").write_text("[1, 2")
    (w / "ids.json").write_text(json.dumps({"broken_status": broken_status.name, "broken_config": broken_config.name}))
    # a folder of the user's that is not a run, holding another tool's best.pt
    user = w / "my_results"
    user.mkdir()
    (user / "best.pt").write_bytes(b"another tool's weights")
    (user / "notes.txt").write_text("keep me")
    (w / "outdir").mkdir()
    (w / "a_file.txt").write_text("just a file")
    (w / "list.json").write_text("[1, 2, 3]")
    (w / "wrongtype.json").write_text(json.dumps({"epochs": "many"}))
    mnist = w / "mnist"
    mnist.mkdir()
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(200))  # gzip magic, then junk
    (mnist / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))
    (w / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    (w / "corrupt.zip").write_bytes(b"PK\x03\x04" + os.urandom(100))
    # the same weights claimed by another architecture
    import io as _io

    import torch

    from charlab.checkpoint import read_checkpoint_dict

    state = read_checkpoint_dict(ckpt)
    state["config"]["model"].update(name="lenet", kwargs={})
    buf = _io.BytesIO()
    torch.save(state, buf)
    (w / "mismatch.pt").write_bytes(buf.getvalue())
    return w


def _fingerprint(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".lock" not in p.name:
            out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = "dir"
    return out


def _ids(world: Path) -> dict:
    return json.loads((world / "ids.json").read_text())


# (case id, argv with {w} for the world folder, a fragment the message must contain (lower case))
CASES = [
    ("delete-empty-ref", ["runs", "delete", "", "--root", "{w}/runs"], "run"),
    ("delete-blank-ref", ["runs", "delete", "   ", "--root", "{w}/runs"], "run"),
    ("train-into-a-users-folder", ["train", "--source", TINY, *QUICK, "--run-dir", "{w}/my_results"], "run"),
    ("resume-corrupt-config", ["runs", "resume", "{broken_config}", "--root", "{w}/runs"], "config"),
    ("corrupt-gz-idx", ["data", "info", "--source", "mnist:{w}/mnist"], "train-images-idx3-ubyte.gz"),
    ("config-is-a-list", ["train", "--config", "{w}/list.json", *QUICK, "--run-dir", "{w}/new_{case}"], "config"),
    ("config-field-wrong-type", ["train", "--config", "{w}/wrongtype.json", *QUICK, "--run-dir", "{w}/new_{case}"],
     "epochs"),
    ("root-is-a-file", ["runs", "list", "--root", "{w}/a_file.txt"], "a_file.txt"),
    ("run-dir-is-a-file", ["train", "--source", TINY, *QUICK, "--run-dir", "{w}/a_file.txt"], "a_file.txt"),
    ("eval-out-is-a-folder", ["eval", "--run", "{w}/model.pt", "--source", TINY, "--out", "{w}/outdir"], "outdir"),
    ("grid-out-is-a-folder", ["data", "grid", "--source", TINY, "--out", "{w}/outdir"], "outdir"),
    ("eval-cuda-without-gpu", ["eval", "--run", "{w}/model.pt", "--source", TINY, "--device", "cuda"], "cuda"),
    ("checkpoint-of-another-architecture", ["eval", "--run", "{w}/mismatch.pt", "--source", TINY], "architecture"),
    ("predict-top-zero", ["predict", "--run", "{w}/model.pt", "{w}/corrupt.png", "--top", "0"], "top"),
    ("predict-top-negative", ["predict", "--run", "{w}/model.pt", "{w}/corrupt.png", "--top", "-3"], "top"),
    ("data-info-empty-source", ["data", "info", "--source", ""], "source"),
    ("suspects-more-folds-than-images", ["suspects", "--source", TINY, "--folds", "1000"], "fold"),
    ("test-source-is-the-training-data", ["train", "--source", TINY, "--test-source", TINY, *QUICK,
                                          "--run-dir", "{w}/new_{case}"], "test"),
    ("predict-missing-image", ["predict", "--run", "{w}/model.pt", "{w}/nope.png"], "nope.png"),
    ("predict-corrupt-image", ["predict", "--run", "{w}/model.pt", "{w}/corrupt.png"], "corrupt.png"),
    ("eval-missing-run", ["eval", "--run", "{w}/no_such_run"], "no_such_run"),
    ("eval-missing-source", ["eval", "--run", "{w}/model.pt", "--source", "{w}/no_such_folder"], "no_such_folder"),
    ("train-unknown-model", ["train", "--source", TINY, "--model", "no_such_net", *QUICK, "--run-dir", "{w}/new_{case}"],
     "lenet"),
    ("train-missing-source", ["train", "--source", "{w}/no_such_folder", *QUICK, "--run-dir", "{w}/new_{case}"],
     "no_such_folder"),
    ("train-zero-epochs", ["train", "--source", TINY, "--epochs", "0", "--run-dir", "{w}/new_{case}"], "epochs"),
    ("runs-show-unknown", ["runs", "show", "no_such_run", "--root", "{w}/runs"], "no_such_run"),
    ("data-info-corrupt-zip", ["data", "info", "--source", "{w}/corrupt.zip"], "corrupt.zip"),
    ("data-info-missing-path", ["data", "info", "--source", "{w}/no_such_folder"], "no_such_folder"),
]


@pytest.mark.parametrize("case,argv,fragment", CASES, ids=[c[0] for c in CASES])
def test_a_user_mistake_gets_one_clear_line(world, capsys, case, argv, fragment):
    subs = {"w": str(world), "case": case, **_ids(world)}
    argv = [a.format(**subs) for a in argv]
    before = _fingerprint(world)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own refusals (usage + one error line)
        rc = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in re.split(r"[\r\n]+", err) if ln.strip() and not _PROGRESS.search(ln)]
    assert rc not in (0, None), f"{case}: exit {rc}, stderr {err!r}"
    assert "Traceback" not in err
    message = lines[-1] if lines else ""
    assert message and "error" in message.lower() and len(message) <= 300, f"{case}: {err!r}"
    # one line of ours; argparse may print its usage block above its own error line
    assert len(lines) == 1 or lines[0].startswith("usage:"), f"{case}: {err!r}"
    assert fragment in message.lower(), f"{case}: {message!r} does not mention {fragment!r}"
    assert _fingerprint(world) == before, f"{case} touched files outside its output"


def test_a_run_with_an_unreadable_status_is_listed_as_such_and_never_started(world, capsys):
    broken = _ids(world)["broken_status"]
    before = _fingerprint(world)
    assert main(["runs", "list", "--root", str(world / "runs"), "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[broken]["state"] not in ("queued", "running")
    assert _fingerprint(world) == before  # nothing started, nothing rewritten


def test_output_piped_into_head_ends_quietly(world):
    # `python -m charlab models | head -1`: the reader closes the pipe early
    cmd = f"{sys.executable} -m charlab models | head -c 20"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
