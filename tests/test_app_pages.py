"""AppTest of every page: no exception, the key elements present, and the widgets driving the
right charlab calls (launch, preview, stop/delete, the saved drawing).

Data: a 10-class synthetic source of 30 images per class (what the sidebar makes of
Classes=10, 30 images per class), and an untrained checkpoint plus two finished run
directories in a temporary lab folder.
"""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from app_fixtures import ROOT, SEVEN, SMALL_SOURCE, canvas_value, make_checkpoint, make_finished_run
from charlab.runs import update_status

TIMEOUT = 120  # first loads render the synthetic set; later ones hit the disk cache


@pytest.fixture(autouse=True)
def navigation_v2(monkeypatch):
    """AppTest resets PagesManager.uses_pages_directory before every run; with a pages/ folder next to
    app.py its second run then takes Streamlit's legacy pages-folder path and runs the page script
    WITHOUT app.py (no sidebar, no shared state). The real server decides once per process and
    st.navigation switches the legacy path off for good; do the same here."""
    from streamlit.runtime.pages_manager import PagesManager

    init = PagesManager.__init__

    def v2_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", v2_init)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("lab")
    ckpt = make_checkpoint(home / "checkpoints" / "default.pt")
    runs = [make_finished_run(home / "runs", ckpt, lr=lr) for lr in (3e-3, 1e-3)]
    return SimpleNamespace(home=home, ckpt=ckpt, runs=runs, runs_root=home / "runs",
                           drawings=home / "user_data" / "drawings")


def open_app(lab, page: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["runs_root"] = str(lab.runs_root)
    at.session_state["checkpoints_dir"] = str(lab.ckpt.parent)
    at.session_state["uploads_dir"] = str(lab.home / "user_data" / "uploads")
    at.session_state["drawings_dir"] = str(lab.drawings)
    # the sidebar's synthetic widgets set to the small source
    at.session_state["sb_synthetic_classes"] = "digits"
    at.session_state["sb_synthetic_n"] = 30
    at.session_state["dh_on"] = False  # the Dataset page's data-health checks: their own test below
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    if "sb_kind" not in state:
        assert at.session_state["source"] == SMALL_SOURCE
    if page:
        at.switch_page(f"pages/{page}.py")
        at.run()
    return at


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def test_landing_page_does_not_import_torch(lab):
    """Cold start: the landing page (and the sidebar) must render without torch."""
    code = ("import sys; from streamlit.testing.v1 import AppTest; at = AppTest.from_file('app.py'); at.run(timeout=60); "
            "assert not at.exception, at.exception; print('torch' in sys.modules)")
    env = {**os.environ, "CHARLAB_RUNS": str(lab.runs_root), "CHARLAB_CHECKPOINTS": str(lab.ckpt.parent)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("False"), "the landing page imported torch"


def test_home_lists_setup(lab):
    at = open_app(lab)
    ok(at)
    assert "charlab" in titles(at)
    assert len(at.get("page_link")) >= 6
    setup = " ".join(m.value for m in at.markdown)
    assert "**Training runs:** 2 (2 done)" in setup and SMALL_SOURCE in setup


def test_sidebar_builds_source_strings(lab):
    at = open_app(lab)
    at.sidebar.selectbox(key="sb_kind").set_value("mnist").run()
    at.sidebar.text_input(key="sb_mnist_folder").input("/data/emnist").run()
    at.sidebar.selectbox(key="sb_mnist_dataset").set_value("emnist:letters").run()
    assert at.session_state["source"] == "emnist:/data/emnist:letters"
    at.sidebar.selectbox(key="sb_kind").set_value("path").run()
    at.sidebar.text_input(key="sb_path_path").input(str(lab.home / "nowhere.zip")).run()
    assert at.session_state["source"] == str(lab.home / "nowhere.zip")
    at.sidebar.selectbox(key="sb_kind").set_value("digitsum").run()
    at.sidebar.text_input(key="sb_digitsum_from").input("mnist:/data/mnist").run()
    assert at.session_state["source"] == "digitsum:k=4,from=mnist:/data/mnist"
    # the active model: the checkpoint and both finished runs
    assert len(at.sidebar.selectbox(key="sb_model").options) == 3


def test_uploaded_zip_is_saved_and_becomes_the_source(lab):
    import io
    import zipfile

    from PIL import Image, ImageDraw

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for label, shape in (("A", [(8, 56), (32, 8), (56, 56)]), ("B", [(16, 8), (16, 56), (48, 32), (16, 8)])):
            for i in range(3):
                im = Image.new("L", (64, 64), 255)
                ImageDraw.Draw(im).line(shape, fill=0, width=5 + i)
                png = io.BytesIO()
                im.save(png, format="PNG")
                z.writestr(f"{label}/{i}.png", png.getvalue())
    at = open_app(lab, sb_kind="upload")
    at.sidebar.file_uploader(key="sb_upload").upload("my letters?.zip", buf.getvalue(), "application/zip").run()
    saved = lab.home / "user_data" / "uploads" / "my_letters_.zip"
    assert saved.read_bytes() == buf.getvalue()
    assert at.session_state["source"] == str(saved)
    at.switch_page("pages/dataset.py")
    at.run()
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "2" and metrics["Images"] == "6"


def test_bad_path_shows_a_message_not_a_traceback(lab):
    at = open_app(lab, "dataset", sb_kind="path", sb_path_path=str(lab.home / "nowhere.zip"))
    ok(at)
    assert at.error and "nowhere.zip" in at.error[0].value


def test_dataset_page(lab):
    at = open_app(lab, "dataset")
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "10" and metrics["Images"] == "300"
    assert metrics["Train"] and metrics["Validation"] and metrics["Test"] == "60"
    assert len(at.get("plotly_chart")) == 1
    assert len(at.image) == 1  # the sample grid of the chosen class
    at.segmented_control(key="ds_sort").set_value("name").run()
    ok(at)
    at.selectbox(key="ds_class").set_value(3).run()
    ok(at)
    assert "class '3'" in at.image[0].captions[0]


def test_dataset_page_health_section(lab):
    """The data-health section on the small synthetic source (pixels, PCA: no model, no numba)."""
    at = open_app(lab, "dataset", dh_on=True, dh_map="pca", dh_emb="pixels")
    ok(at)
    values = {m.label: m.value for m in at.metric}
    assert {"Leaks", "Exact copies", "Near copies", "Blank", "Inverted", "Far off"} <= set(values)
    leaks, tested = values["Leaks"].split(" / ")  # "N / test images checked"
    assert leaks.isdigit() and int(tested) > 0
    assert any(s.value.startswith("Map (PCA") for s in at.subheader)


def test_dataset_and_augment_pages_on_chars74k(lab, chars74k_train_zip):
    """The real zips: 62 classes named by their characters, the sibling test zip as the test split."""
    at = open_app(lab, "dataset", sb_kind="path", sb_path_path=str(chars74k_train_zip))
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "62" and metrics["Images"] == "2,480" and metrics["Test"] == "930"
    assert "A" in at.selectbox(key="ds_class").options[10]
    at.switch_page("pages/augment.py")
    at.run()
    ok(at)
    assert len(at.image) == 1 and len(at.get("plotly_chart")) == 1


def test_augment_page_drives_preview(lab, monkeypatch):
    import charlab.augment as aug

    calls = []
    real = aug.preview

    def spy(images, cfg, seed, k=8):
        calls.append((cfg.preset, seed, k, tuple(images.shape)))
        return real(images, cfg, seed=seed, k=k)

    monkeypatch.setattr(aug, "preview", spy)
    at = open_app(lab, "augment")
    ok(at)
    assert calls[-1][0] == "light" and calls[-1][1] == 0 and calls[-1][2] == 7
    at.selectbox(key="aug_preset").set_value("strong").run()
    at.button(key="aug_reroll").click().run()
    ok(at)
    assert calls[-1][:2] == ("strong", 1)
    at.toggle(key="aug_edit").set_value(True).run()
    at.slider(key="aug_strong_rotate").set_value((-30.0, 30.0)).run()
    ok(at)
    assert calls[-1][0] == "custom"
    assert at.session_state["aug_custom"]["rotate"] in ([-30.0, 30.0], (-30.0, 30.0))
    # balancing: oversample raises every class to the target
    at.selectbox(key="aug_balance").set_value("oversample").run()
    ok(at)
    assert len(at.get("plotly_chart")) == 1


def test_train_page_launches_the_form_config(lab, monkeypatch):
    import charlab.runs as runs

    launched = []

    def fake_launch(config, root="runs", **kw):
        launched.append((config, root))
        return SimpleNamespace(id="20990101-000000-lenet-abc123", state="queued", queue_position=2)

    monkeypatch.setattr(runs, "launch", fake_launch)
    at = open_app(lab, "train")
    ok(at)
    # a recipe fills the form; the fields the form does not show come from it too
    at.selectbox(key="tr_recipe").set_value("report_lenet_mish").run()
    ok(at)
    assert at.selectbox(key="tr_model").value == "lenet" and at.selectbox(key="tr_opt").value == "adam"
    at.selectbox(key="tr_model").set_value("lenet")
    at.number_input(key="tr_epochs").set_value(4)
    at.selectbox(key="tr_aug").set_value("strong")
    at.selectbox(key="tr_balance").set_value("sampler")
    at.number_input(key="tr_patience").set_value(2)
    at.selectbox(key="tr_init").set_value(str(lab.ckpt))
    assert at.selectbox(key="tr_teacher").value is None  # no distillation unless asked
    at.selectbox(key="tr_teacher").set_value(str(lab.ckpt))
    at.form_submit_button[0].click().run()
    ok(at)
    (cfg, root), = launched
    assert root == str(lab.runs_root)
    assert cfg.model.name == "lenet" and cfg.epochs == 4 and cfg.patience == 2 and cfg.balance == "sampler"
    assert cfg.model.kwargs.get("activation") == "mish" and cfg.optimizer == "adam" and cfg.weight_decay == 0.0
    assert cfg.augment.preset == "strong" and cfg.augment.rotate_p > 0
    assert cfg.data.source == SMALL_SOURCE and cfg.init_from == str(lab.ckpt) and cfg.teacher == str(lab.ckpt)
    assert any("place 2" in s.value for s in at.success)


def test_runs_page(lab, monkeypatch):
    import charlab.runs as runs

    stopped = []
    monkeypatch.setattr(runs, "stop_run", lambda d, *a, **k: stopped.append(d))
    at = open_app(lab, "runs")
    ok(at)
    assert len(at.dataframe) >= 2  # the runs table and the config diff
    assert len(at.get("plotly_chart")) == 1
    diff = at.dataframe[-1].value
    assert list(diff["setting"]) == ["lr"]
    # a finished run cannot be stopped; delete needs the confirmation first
    assert at.button(key="runs_stop").disabled
    assert at.button(key="runs_delete").disabled
    victim = lab.runs[0]
    at.selectbox(key="runs_manage").set_value(victim.name).run()
    at.checkbox(key="runs_confirm").check().run()
    at.button(key="runs_delete").click().run()
    ok(at)
    assert not victim.exists()
    lab.runs[0] = make_finished_run(lab.runs_root, lab.ckpt, lr=3e-3)  # restore for later tests


def test_runs_page_groups_a_sweep(lab, tmp_path):
    root = tmp_path / "runs"
    for trial, lr in enumerate((1e-3, 3e-3)):
        d = make_finished_run(root, lab.ckpt, lr=lr)
        update_status(d, sweep="lrsearch", trial=trial)
    make_finished_run(root, lab.ckpt)
    at = open_app(lab, "runs", runs_root=str(root))
    ok(at)
    assert len(at.dataframe[0].value) == 3 and "sweep" in at.dataframe[0].value.columns
    at.segmented_control(key="runs_group").set_value("lrsearch").run()
    ok(at)
    assert len(at.dataframe[0].value) == 2
    assert set(at.dataframe[0].value["sweep"]) == {"lrsearch #0", "lrsearch #1"}


def test_runs_page_stops_a_running_run(lab, tmp_path, monkeypatch):
    import charlab.runs as runs
    from charlab.config import DataConfig, TrainConfig

    # A run directory whose status says running, owned by this (alive) process with a fresh heartbeat.
    d = runs.create_run(TrainConfig(data=DataConfig(source=SMALL_SOURCE), epochs=5), tmp_path / "runs", state="running")
    stopped = []
    monkeypatch.setattr(runs, "stop_run", lambda ref, *a, **k: stopped.append(ref))
    at = open_app(lab, "runs", runs_root=str(tmp_path / "runs"))
    ok(at)
    assert any("refreshing every" in c.value for c in at.caption)  # live while it trains
    assert not at.button(key="runs_stop").disabled and at.button(key="runs_resume").disabled
    at.button(key="runs_stop").click().run()
    ok(at)
    assert [str(x) for x in stopped] == [str(d)]


def test_runs_page_empty_state(lab, tmp_path):
    at = open_app(lab, "runs", runs_root=str(tmp_path))
    ok(at)
    assert at.info and "Train" in at.info[0].value


def test_errors_page(lab):
    at = open_app(lab, "errors", sb_model=str(lab.ckpt))
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert {"Accuracy", "Macro-F1", "Images", "Errors"} <= set(metrics)
    assert len(at.get("plotly_chart")) >= 2  # the confusion matrix and the saliency overlays
    subheads = [s.value for s in at.subheader]
    assert "Confusion matrix" in subheads and "Top losses" in subheads and "Label problems" in subheads
    assert [p.label for p in at.get("page_link") if "labels" in str(p.proto.page)] == ["Audit and fix the labels"]
    if at.selectbox(key="err_pair").options:  # pick the second most confused pair
        opts = at.selectbox(key="err_pair").options
        at.selectbox(key="err_pair").select_index(min(1, len(opts) - 1)).run()
        ok(at)
    at.selectbox(key="err_split").set_value("test").run()
    ok(at)
    assert [m.value for m in at.metric if m.label == "Images"] == ["60"]
    # after a change of split the pair list and the cell shown agree again
    heading = [s.value for s in at.subheader if "→ predicted" in s.value]
    t, p = at.selectbox(key="err_pair").value  # class indices; the digits' names are the same numbers
    assert (t, p) == at.session_state["err_cell"] and heading == [f"True '{t}' → predicted '{p}'"]


def test_labels_page_on_the_small_source(lab, tmp_path, monkeypatch):
    """The Labels page with an untrained model as reference on the small synthetic source: it says a diagnosis."""
    monkeypatch.setenv("CHARLAB_USER_DATA", str(tmp_path / "ud"))
    at = open_app(lab, "labels", sb_model=str(lab.ckpt))
    ok(at)
    assert "Labels" in titles(at)
    assert len(at.success) + len(at.warning) >= 1  # the diagnosis sentence
    assert any(b.key == "lab_undo" for b in at.button)


def test_errors_page_reads_a_62_class_model_on_digits_both_ways(lab, tmp_path):
    """The shipped 62-class synthetic model on the sidebar's digit source: case-insensitive accuracy
    beside top-1 with the groups used, and the switch that restricts it to the data's classes."""
    import shutil

    ckpt = tmp_path / "checkpoints" / "synthetic.pt"
    ckpt.parent.mkdir()
    shutil.copy(ROOT / "checkpoints" / "synthetic.pt", ckpt)
    at = open_app(lab, "errors", sb_model=str(ckpt), checkpoints_dir=str(ckpt.parent))
    at.radio(key="err_data").set_value("sidebar").run()
    ok(at)
    pct = lambda label: float({m.label: m.value for m in at.metric}[label].rstrip("%"))  # noqa: E731
    acc, ci = pct("Accuracy"), pct("Case-insensitive")
    assert ci >= acc and any(c.value.startswith("Look-alike groups: ") and "— learned from" in c.value for c in at.caption)
    assert any("0/O/o" in c.value for c in at.caption)  # the round twins, learned from its own confusion
    letters = [r for r in at.dataframe[0].value.itertuples()] if at.dataframe else []
    assert all(str(r[1]).isdigit() for r in letters)  # the per-class table: only the classes the data holds
    at.toggle(key="err_restrict").set_value(True).run()
    ok(at)
    assert pct("Accuracy") > acc  # digits read as O, l, S … are now read among the digits only
    assert any("restricted to the data's 10 classes" in c.value for c in at.caption)


def test_draw_page_predicts_and_saves(lab):
    at = open_app(lab, "draw", sb_model=str(lab.ckpt))
    ok(at)
    assert at.info  # empty canvas: asks to draw
    at.session_state["draw_canvas_0"] = canvas_value(SEVEN)
    at.run()
    ok(at)
    assert any("Looks like" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 3  # top-5, the processed image, Grad-CAM
    at.text_input(key="draw_label").input("7")
    at.form_submit_button[0].click().run()
    ok(at)
    saved = list((lab.drawings / "7").glob("*.png"))
    assert len(saved) == 1
    assert any("Saved as '7'" in s.value for s in at.success)
    assert "My drawings" in at.sidebar.selectbox(key="sb_kind").options
    at.button(key="draw_clear").click().run()
    ok(at)
    assert at.info


# Clean pen strokes (canvas fractions) as a user draws them on the Draw canvas.
DRAWN = {"L": [[(0.3, 0.15), (0.3, 0.85), (0.75, 0.85)]],
         "T": [[(0.2, 0.15), (0.8, 0.15)], [(0.5, 0.15), (0.5, 0.85)]],
         "4": [[(0.6, 0.85), (0.6, 0.15), (0.2, 0.62), (0.8, 0.62)]]}


@pytest.mark.parametrize("char", sorted(DRAWN))
def test_draw_page_reads_a_drawn_character(lab, tmp_path, char):
    """The shipped synthetic-only model on the Draw page reads a clearly drawn character right."""
    import shutil

    ckpt = tmp_path / "checkpoints" / "synthetic.pt"
    ckpt.parent.mkdir()
    shutil.copy(ROOT / "checkpoints" / "synthetic.pt", ckpt)
    at = open_app(lab, "draw", sb_model=str(ckpt), checkpoints_dir=str(ckpt.parent))
    at.session_state["draw_canvas_0"] = canvas_value(DRAWN[char])
    at.run()
    ok(at)
    verdict = [m.value for m in at.markdown if "Looks like" in m.value]
    assert verdict and verdict[0].startswith(f"### Looks like **{char}"), verdict


def test_every_page_works_on_a_digitsum_source(lab, tmp_path):
    """The digit-sum task is a normal dataset: wide 28×112 images, 37 sum classes."""
    import torch

    from charlab.checkpoint import save_checkpoint
    from charlab.config import DataConfig, ModelConfig, TrainConfig
    from charlab.models import create_model

    digits = "synthetic:classes=digits,n=30,test_n=6"
    source = f"digitsum:k=4,from={digits}"
    torch.manual_seed(0)
    net = create_model("simple_cnn", num_classes=37, image_size=(28, 112))
    ckpt = tmp_path / "checkpoints" / "digitsum.pt"
    save_checkpoint(ckpt, net, TrainConfig(data=DataConfig(source=source), model=ModelConfig(name="simple_cnn")),
                    [str(s) for s in range(37)], (28, 112))
    state = dict(sb_kind="digitsum", sb_digitsum_from=digits, sb_model=str(ckpt), checkpoints_dir=str(ckpt.parent))
    for page in ("dataset", "augment", "train", "errors", "labels", "draw"):
        at = open_app(lab, page, **state)
        ok(at)
        assert at.session_state["source"] == source
        if page == "dataset":
            assert {m.label: m.value for m in at.metric}["Classes"] == "37"
        if page == "errors":
            from charlab.data import load_splits

            n_val = len(load_splits(DataConfig(source=source)).val)  # ~15% of the 6,000 composites
            assert {m.label: m.value for m in at.metric}["Images"] == f"{n_val:,}"
    at.session_state["draw_canvas_0"] = canvas_value([[(0.1, 0.2), (0.1, 0.8)], [(0.5, 0.2), (0.5, 0.8)]])
    at.run()
    ok(at)
    assert any("Looks like" in m.value for m in at.markdown)
