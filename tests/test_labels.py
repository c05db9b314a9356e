"""Label overrides: the file's round trip, undo, hash mismatch, corrupt files, and every loader
honouring them (load_splits, data info, the CLI)."""
import json

import numpy as np
import pytest
import torch

from charlab.data import CharDataset
from charlab.errors import CharlabError
from charlab.labels import LabelOverrides, apply, default_path_for

from conftest import ROOT


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


# --- end to end on a real copy: suspects -> labels apply -> every loader honours the file ----------

@pytest.fixture(scope="module")
def swapped_zip(chars74k_train_zip, tmp_path_factory):
    """Chars74K's A-E (200 images) with folders A and B exchanged, as a zip in a tmp folder."""
    from charlab.bench.labels import relabelled_zip
    from charlab.config import DataConfig
    from charlab.data import load_source

    full = load_source(str(chars74k_train_zip), DataConfig())
    y, cl = full.labels.numpy(), full.classes
    keep = np.flatnonzero(np.isin(y, [cl.index(c) for c in "ABCDE"]))
    sw = y.copy()
    sw[y == cl.index("A")], sw[y == cl.index("B")] = cl.index("B"), cl.index("A")
    return relabelled_zip(chars74k_train_zip, tmp_path_factory.mktemp("swap") / "abcde.zip", full, sw, keep=keep)


def _cli(capsys, *argv):
    from charlab.__main__ import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_suspects_reference_labels_apply_and_loaders(swapped_zip, tmp_path, capsys):
    from charlab.config import DataConfig
    from charlab.data import load_splits

    ref = str(ROOT / "checkpoints" / "synthetic.pt")
    code, out, _ = _cli(capsys, "suspects", "--source", str(swapped_zip), "--reference", ref, "--json", "--limit", "0")
    rep = json.loads(out)
    assert code == 0 and rep["diagnosis"]["kind"] == "swapped" and rep["reference"] == ref
    assert {rep["pairs"][0]["given"], rep["pairs"][0]["likely"]} == {"A", "B"}
    assert "restricted to the data's 5" in " ".join(rep["notes"])
    report = tmp_path / "report.json"
    report.write_text(out)
    fix = tmp_path / "fix.json"
    code, out, _ = _cli(capsys, "labels", "apply", "--suspects", str(report), "--min-score", "0.5", "--out", str(fix))
    n = len(json.loads(fix.read_text())["entries"])
    assert code == 0 and n >= 70 and f"{n} relabelled" in out
    entries = json.loads(fix.read_text())["entries"]
    # each decision moves an image of folder A (really a B) to B and vice versa
    assert sum(e["given"] in "AB" and e["label"] in "AB" for e in entries) >= 0.95 * n

    code, out, _ = _cli(capsys, "data", "info", "--source", str(swapped_zip), "--labels", str(fix), "--json")
    info = json.loads(out)
    assert code == 0 and info["labels"]["overridden"] == n and info["labels"]["n_stale"] == 0
    assert any("label overrides" in s and f"{n} relabelled" in s for s in info["notes"])
    # load_splits applies it: the training split's A folder now mostly holds A's again
    sp = load_splits(DataConfig(source=str(swapped_zip), labels=str(fix)))
    raw = load_splits(DataConfig(source=str(swapped_zip)))
    assert sp.labels.overridden == n and not raw.labels.file
    def by_hash(s):
        return {h: int(y) for part in (s.train, s.val) for h, y in zip(part.hashes, part.labels)}

    fixed, given = by_hash(sp), by_hash(raw)
    assert fixed.keys() == given.keys()  # the same images (the split is re-stratified on the new labels)
    assert sum(fixed[h] != given[h] for h in fixed) == n

    run = tmp_path / "run"
    code, _, _ = _cli(capsys, "train", "--source", str(swapped_zip), "--labels", str(fix), "--model", "lenet",
                      "--epochs", "1", "--limit-batches", "1", "--augment", "none", "--run-dir", str(run))
    cfg = json.loads((run / "config.json").read_text())
    assert code == 0 and cfg["data"]["labels"] == str(fix.resolve())  # stored with the run
    code, out, _ = _cli(capsys, "eval", "--run", str(run), "--split", "val", "--json")
    assert code == 0 and any("label overrides" in s for s in json.loads(out)["notes"])

    code, out, _ = _cli(capsys, "labels", "undo", str(fix))
    assert code == 0 and f"({n} images)" in out and json.loads(fix.read_text())["entries"] == []


def test_a_changed_image_is_stale_on_real_files(swapped_zip, tmp_path):
    """The same path with other bytes (the file was re-saved) is reported, its decision not applied."""
    import io
    import zipfile

    from PIL import Image

    from charlab.config import DataConfig
    from charlab.data import load_source

    ds = load_source(str(swapped_zip), DataConfig())
    rel, h = ds.source_paths(), ds.hashes
    ov = LabelOverrides(path=tmp_path / "ov.json")
    ov.exclude(h[0], rel[0])
    ov.relabel(h[1], rel[1], "C")
    ov.save()
    changed = tmp_path / "changed.zip"
    with zipfile.ZipFile(swapped_zip) as zin, zipfile.ZipFile(changed, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == rel[1]:  # re-encode: same picture, other bytes
                buf = io.BytesIO()
                Image.open(io.BytesIO(data)).convert("L").save(buf, format="PNG", optimize=True)
                data = buf.getvalue()
            zout.writestr(name, data)
    again = load_source(str(changed), DataConfig())
    out, rep = apply(again, str(ov.path))
    assert rep.excluded == 1 and rep.overridden == 0 and len(out) == len(again) - 1
    assert rep.stale == [{"path": rel[1], "reason": "the image changed since the decision (hash mismatch)"}]


def test_cli_labels_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    for argv in (["labels", "show", str(bad)], ["labels", "undo", str(tmp_path / "none.json")],
                 ["labels", "apply", "--suspects", str(bad), "--out", str(tmp_path / "o.json")],
                 ["data", "info", "--source", "synthetic:classes=digits,n=5", "--labels", str(tmp_path / "typo.json")]):
        code, out, err = _cli(capsys, *argv)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert bad.read_text() == "{oops"


def _labels_app(tmp_path, monkeypatch, source):
    """An AppTest of the app with the shipped synthetic-only model and `source` in the sidebar;
    decisions go to tmp_path/ud."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    init = PagesManager.__init__

    def v2_init(self, *args, **kwargs):  # as in test_app_pages: the real server's navigation mode
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", v2_init)
    monkeypatch.setenv("CHARLAB_USER_DATA", str(tmp_path / "ud"))
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / "synthetic.pt").write_bytes((ROOT / "checkpoints" / "synthetic.pt").read_bytes())
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["checkpoints_dir"] = str(ckpts)
    at.session_state["runs_root"] = str(tmp_path / "runs")
    at.session_state["sb_kind"] = "path"
    at.session_state["sb_path_path"] = str(source)
    return at


def test_labels_page_fixes_a_swap_and_undoes(swapped_zip, tmp_path, monkeypatch):
    """AppTest: the Labels page names the swap, one click writes the fix, undo removes it, and the
    Dataset page loads the sidebar's source with the file applied."""
    at = _labels_app(tmp_path, monkeypatch, swapped_zip)
    at.run()
    at.switch_page("pages/labels.py").run()
    assert not at.exception
    assert any("folders A and B are swapped" in w.value for w in at.warning)
    swap = next(b for b in at.button if b.label.startswith("Apply the swap A ↔ B"))
    swap.click().run()
    files = list((tmp_path / "ud" / "labels").glob("*.json"))
    entries = json.loads(files[0].read_text())["entries"]
    assert len(entries) >= 70 and all(e["action"] == "relabel" for e in entries)
    assert any(b.label.startswith("Swap A ↔ B applied") and b.disabled for b in at.button)
    assert any("Fixed in the override file" in s.value for s in at.success)
    at.switch_page("pages/dataset.py").run()
    assert not at.exception
    assert any(f"**{len(entries)}** relabelled" in c.value for c in at.caption)
    # click 3: Launch on the Train page trains on the fixed labels (the file is in the run's config)
    import charlab.runs as runs

    launched = []
    monkeypatch.setattr(runs, "launch", lambda config, root="runs", **kw: launched.append(config) or
                        __import__("types").SimpleNamespace(id="20990101-000000-charnet-abc123", state="queued",
                                                            queue_position=1))
    at.switch_page("pages/train.py").run()
    at.form_submit_button[0].click().run()
    assert not at.exception and launched[0].data.labels == str(files[0]) and launched[0].data.source == str(swapped_zip)
    at.switch_page("pages/labels.py").run()
    next(b for b in at.button if b.label.startswith("Undo: apply the swap")).click().run()
    assert json.loads(files[0].read_text())["entries"] == []
    assert any(b.label.startswith("Apply the swap") for b in at.button)
    # one card: accept its likely label; another: type a label (a class of the source, or refused)
    card = next(b for b in at.button if b.key and b.key.startswith("lab_ok_"))
    card.click().run()
    (e,) = json.loads(files[0].read_text())["entries"]
    assert e["action"] == "relabel" and e["label"] == card.label.split()[-1]
    box = next(t for t in at.text_input if t.key and t.key.startswith("lab_ty_"))  # the next undecided card
    key = box.key
    box.set_value("Z").run()  # not a class of A-E: refused, nothing written
    assert len(json.loads(files[0].read_text())["entries"]) == 1
    next(t for t in at.text_input if t.key == key).set_value("C").run()
    assert sorted(x["label"] for x in json.loads(files[0].read_text())["entries"]) == sorted([e["label"], "C"])


def test_labels_page_sets_look_alikes_aside_on_clean_chars74k(chars74k_train_zip, tmp_path, monkeypatch):
    """AppTest on the real, clean trainPart1: c read as C is no error, so the verdict is a believable
    Clean, the look-alikes are shown apart and never in the bulk accept."""
    at = _labels_app(tmp_path, monkeypatch, chars74k_train_zip)
    at.run()
    at.switch_page("pages/labels.py").run()
    assert not at.exception
    verdict = at.success[0].value
    assert verdict.startswith("**Clean**") and "look-alike ambiguities" in verdict and "are not counted" in verdict
    shown = next(c.value for c in at.caption if c.value.startswith("Look-alike twins set aside"))
    n_twins = int(shown.split("Their ")[1].split()[0])
    assert n_twins >= 150 and "C/c" in shown and f"{n_twins} case/look-alike ambiguities" in verdict  # 238 seen
    suspects = int(next(m.value for m in at.metric if m.label == "Suspects").replace(",", ""))
    assert 0 < suspects < 150  # 87 seen, against 325 with the twins
    bulk = next(b for b in at.button if b.key == "lab_bulk")
    assert 0 < int(bulk.label.split()[1]) < 60  # 30 scoring >= 0.8 (112 with the twins)
    at.segmented_control(key="lab_show").set_value("look-alikes").run()
    cards = [m.value for m in at.markdown if m.value.startswith("given **")]
    assert cards and all(c.split("**")[1].lower() == c.split("**")[3].lower() or {c.split("**")[1], c.split("**")[3]} <= set("0Oo1Iil")
                         for c in cards), cards
    assert not list((tmp_path / "ud").rglob("*.json"))  # looking writes nothing
