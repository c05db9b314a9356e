"""Label overrides: the file's round trip, undo, hash mismatch, corrupt files, and every loader
honouring them (load_splits, data info, the CLI)."""
import json

import numpy as np
import pytest
import torch

from charlab.data import CharDataset
from charlab.errors import CharlabError
from charlab.labels import LabelOverrides, apply, default_path_for


def small(n=6):
    """Six 'images' in classes a/b/c with folder-relative paths and made-up content hashes."""
    return CharDataset(images=torch.zeros(n, 1, 4, 4, dtype=torch.uint8), labels=torch.tensor([0, 0, 1, 1, 2, 2][:n]),
                       classes=["a", "b", "c"], paths=[f"/data/src/{'aabbcc'[i]}/{i}.png" for i in range(n)],
                       hashes=[f"h{i}" for i in range(n)], info={"root": "/data/src"}, source="/data/src")


def test_round_trip_is_readable_sorted_json(tmp_path):
    ds = small()
    f = tmp_path / "labels" / "ov.json"
    ov = LabelOverrides.load(f, source=ds.source)  # a missing file is an empty set
    assert len(ov) == 0 and not f.exists()
    ov.relabel("h1", "a/1.png", "b", given="a")
    ov.exclude("h4", "c/4.png", given="c")
    ov.keep("h0", "a/0.png", given="a")
    ov.save()
    doc = json.loads(f.read_text())
    assert doc["format"] == "charlab-label-overrides" and doc["source"] == "/data/src"
    assert [e["path"] for e in doc["entries"]] == ["a/0.png", "a/1.png", "c/4.png"]  # sorted: diffable
    e = doc["entries"][1]
    assert (e["hash"], e["action"], e["label"], e["given"]) == ("h1", "relabel", "b", "a") and e["time"].endswith("Z")
    assert f.read_text().count("\n") > 10  # indented, one field per line

    again = LabelOverrides.load(f)
    assert again.entries == ov.entries and again.counts() == {"relabel": 1, "exclude": 1, "keep": 1}
    out, rep = apply(ds, again)
    assert out.labels.tolist() == [0, 1, 1, 1, 2]  # image 1 now b, image 4 gone
    assert [p.rsplit("/", 1)[-1] for p in out.paths] == ["0.png", "1.png", "2.png", "3.png", "5.png"]
    assert (rep.overridden, rep.excluded, rep.kept, rep.stale) == (1, 1, 1, [])
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2] and len(ds) == 6  # the input is untouched
    assert "1 relabelled, 1 excluded" in rep.notes()[0]


def test_undo_steps_and_single_images(tmp_path):
    ov = LabelOverrides(path=tmp_path / "ov.json")
    ov.relabel("h1", "a/1.png", "b")
    ov.relabel("h1", "a/1.png", "c")  # changed my mind
    with ov.batch("apply the swap"):
        ov.relabel("h0", "a/0.png", "b")
        ov.relabel("h2", "b/2.png", "a")
    ov.exclude("h5", "c/5.png")
    assert ov.undo() == "undid exclude c/5.png" and ov.get("c/5.png") is None
    assert ov.undo() == "undid apply the swap (2 images)" and ov.get("a/0.png") is None and ov.get("b/2.png") is None
    assert ov.undo("a/1.png") and ov.get("a/1.png")["label"] == "b"  # back to the first decision, not gone
    ov.save()
    reread = LabelOverrides.load(ov.path)  # history is in the file: undo works after a reload (the app reruns)
    assert reread.undo() and len(reread) == 0
    assert reread.undo() is None  # nothing left


def test_bulk_decide_is_one_step():
    ov = LabelOverrides()
    n = ov.decide([{"hash": "h0", "path": "a/0.png", "action": "relabel", "label": "b"},
                   {"hash": "h3", "path": "b/3.png", "action": "exclude"}], what="accept 2 suspects")
    assert n == 2 and len(ov.history) == 1 and ov.last_step() == "accept 2 suspects"
    with pytest.raises(CharlabError, match="unknown action 'rename'"):
        ov.decide([{"path": "a/0.png", "action": "rename"}])


def test_hash_mismatch_and_missing_images_are_reported_not_applied():
    ds = small()
    ov = LabelOverrides()
    ov.relabel("h1", "a/1.png", "b")
    ov.relabel("OTHER", "a/0.png", "c")  # the file at a/0.png changed since the decision
    ov.exclude("h9", "a/9.png")  # gone
    ov.relabel("h2", "b/2.png", "Z")  # not a class of the source
    out, rep = apply(ds, ov)
    assert out.labels.tolist() == [0, 1, 1, 1, 2, 2] and len(out) == 6
    assert rep.overridden == 1 and rep.excluded == 0
    reasons = {s["path"]: s["reason"] for s in rep.stale}
    assert set(reasons) == {"a/0.png", "a/9.png", "b/2.png"}
    assert "hash mismatch" in reasons["a/0.png"] and "no such image" in reasons["a/9.png"]
    assert "not a class" in reasons["b/2.png"]
    assert "3 override(s) NOT applied" in rep.notes()[1]
    # a source without content hashes cannot be checked: nothing is applied
    no_hash = small()
    no_hash.hashes = None
    out, rep = apply(no_hash, ov)
    assert torch.equal(out.labels, no_hash.labels) and len(rep.stale) == 4


@pytest.mark.parametrize("text, match", [
    ("{not json", "not readable JSON"),
    ('{"format": "something-else", "version": 1}', "format is 'something-else'"),
    ('{"format": "charlab-label-overrides", "version": 1, "entries": [{"path": "a"}]}', "entry 0 needs"),
    ('{"format": "charlab-label-overrides", "version": 1, "entries": [{"path": "a", "action": "relabel"}]}',
     "without a 'label'"),
    ("[1, 2]", "top level is not an object"),
])
def test_a_corrupt_file_is_a_clear_error_and_left_alone(tmp_path, text, match):
    f = tmp_path / "ov.json"
    f.write_text(text)
    with pytest.raises(CharlabError, match=match) as e:
        LabelOverrides.load(f)
    assert str(f) in str(e.value) and "untouched" in str(e.value)
    assert f.read_text() == text  # nothing lost
    with pytest.raises(CharlabError):
        apply(small(), str(f))


def test_default_path_follows_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLAB_USER_DATA", str(tmp_path / "ud"))
    src = tmp_path / "set.zip"
    src.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    p = default_path_for(str(src))
    assert p.parent == tmp_path / "ud" / "labels" and p.name.startswith("set.zip-") and p.suffix == ".json"
    assert default_path_for("set.zip") == p  # relative and absolute spellings share one file
    assert default_path_for("synthetic") != p
