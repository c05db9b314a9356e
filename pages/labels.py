"""Labels page: what is wrong with the training labels, in words, and the relabel loop. A reference
model that never saw these labels reads every image; the diagnosis names a swap, scrambled or
complementary labels; each decision (accept, another label, exclude, keep) goes to the source's
label-override file, which every loader applies. The source itself is never modified."""
import streamlit as st

import ui
import ui_labels as ul
from charlab.errors import CharlabError
from charlab.labels import default_path_for

ui.require_app_frame()

st.title("Labels")
st.caption("Find what is wrong with the labels of the training data, and fix it without touching the files.")
src = ui.source()
choices = ui.model_choices()
if not src or not choices:
    st.info("Choose a data source in the sidebar, and train a model (or put a checkpoint in checkpoints/) to "
            "read the images with.")
    st.stop()
refs, names = [r for r, _ in choices], dict(choices)
default = next((i for i, r in enumerate(refs) if r.endswith("synthetic.pt")), 0)
c1, c2 = st.columns([2, 3])
ref = c1.selectbox("Reference model", refs, index=default, format_func=names.get, key="lab_ref",
                   help="A model that never trained on these labels (the shipped synthetic-only model never saw "
                        "any real data). One trained on them learns their mistakes, a swap included.")
path = default_path_for(src)
c2.caption(f"Decisions are saved to **{path.name}** in `{path.parent}`; the sidebar's source applies them "
           f"everywhere (Dataset, Train, Errors), the shell with `--labels FILE`. The files are never modified.")
try:
    ds, rep, notes = ul.audit(ref, ui._mtime(ref), src)
except CharlabError as e:
    ui.error(e)
    st.stop()
ov = ul.overrides(path, src)
d, sus = rep.diagnosis, rep.suspects
twins = sus[sus["lookalike"]]  # c read as C: a cropped glyph cannot settle it, so never in bulk nor counted
open_ = sus[ul.undecided(sus, ov) & ~sus["lookalike"].to_numpy()]
fixed = bool(d.swaps) and len(sus) > 0 and not len(open_)
box = st.success if d.kind == "clean" or fixed else st.warning
box(f"**{d.kind.capitalize()}** — {d.text}." + (" Fixed in the override file." if fixed else ""))
for n in notes:
    st.caption(n)
if len(twins):
    st.caption(f"Look-alike twins set aside, as a lone cropped glyph cannot tell them apart: "
               f"{' · '.join('/'.join(g) for g in rep.lookalikes)}. Their {len(twins)} images are neither counted "
               f"as wrong nor accepted in bulk; review them one by one under Show → look-alikes.")
st.caption(f"Without a reference model, out-of-fold models trained on the labels themselves judge them (slower; a "
           f"swap stays invisible to them): `python -m charlab suspects --source {src} --json --limit 0 > report.json`, "
           f"then `python -m charlab labels apply --suspects report.json --out {path}`.")
if said := st.session_state.pop("lab_said", None):
    st.toast(said)

counts = ov.counts()
m = st.columns([1, 1, 1, 1.6])
m[0].metric("Suspects", f"{len(sus) - len(twins):,}", help="Images whose label the reference contradicts "
            "(look-alike twins such as c read as C not counted).")
m[1].metric("Relabelled", counts["relabel"])
m[2].metric("Excluded", counts["exclude"])
with m[3]:
    st.button(f"Undo: {ov.last_step()}" if ov.last_step() else "Nothing to undo", key="lab_undo",
              disabled=not ov.last_step(), on_click=ul.undo, args=(path, src), icon=":material/undo:")

# ---- one-click fixes
for sw in d.swaps:
    rows = sus[sus["given"].isin(sw["classes"]) & sus["likely"].isin(sw["looks_like"])]
    title = " ↔ ".join(sw["classes"])
    todo = rows[ul.undecided(rows, ov)]
    st.button(f"Apply the swap {title} ({len(todo)} images)" if len(todo) else f"Swap {title} applied ({len(rows)} images)",
              key=f"lab_swap_{title}", type="primary", disabled=not len(todo), icon=":material/swap_horiz:",
              on_click=ul.decide, args=(path, src, todo, f"apply the swap {title}"))
if d.kind in ("complementary", "scrambled"):
    rows = open_[open_["likely"] != open_["given"]]
    st.button(f"Accept the recovered label of all {len(rows)} images", key="lab_all", type="primary",
              disabled=not len(rows), on_click=ul.decide, args=(path, src, rows, f"accept the {d.kind} recovery"))
if len(open_):
    b1, b2 = st.columns([3, 2], vertical_alignment="bottom")
    cut = b1.slider("Accept every suspect scoring at least", 0.0, 1.0, 0.8, 0.05, key="lab_cut",
                    help="score = p(likely) − p(given) by the reference")
    above = open_[open_["score"] >= cut]
    b2.button(f"Accept {len(above)} suspects", key="lab_bulk", disabled=not len(above),
              on_click=ul.decide, args=(path, src, above, f"accept {len(above)} suspects scoring >= {cut:.2f}"))

# ---- per given class: what its images look like
with st.expander("What each folder's images look like (by the reference)"):
    st.dataframe(d.classes.sort_values("own"), hide_index=True, height=260, column_config={
        "share": st.column_config.ProgressColumn("share like 'likely'", format="percent", min_value=0, max_value=1),
        "own": st.column_config.ProgressColumn("share like itself", format="percent", min_value=0, max_value=1)})

# ---- review grid
st.subheader("Review")
if not len(sus):
    st.caption("No suspect: the reference agrees with every label it is confident about.")
    st.stop()
f1, f2 = st.columns([2, 1], vertical_alignment="bottom")
show = f1.segmented_control("Show", ["undecided", "look-alikes", "all"], default="undecided", key="lab_show",
                            required=True)
rows = {"undecided": open_, "look-alikes": twins}.get(show, sus)
pages = max(1, -(-len(rows) // ul.PER_PAGE))
page = f2.number_input(f"Page (of {pages})", 1, pages, 1, key="lab_page") if pages > 1 else 1
what = {"undecided": "undecided suspects", "look-alikes": "look-alike ambiguities"}.get(show, "suspects")
st.caption(f"{len(rows)} {what}, most suspect first. Accept takes the likely label; Drop excludes the image; Keep "
           f"says the label is right; or type another label." if len(rows) else
           "No look-alike ambiguity." if show == "look-alikes" else
           "Every suspect has a decision: train on the fixed labels from the Train page.")
ul.grid(ds, rows.iloc[(page - 1) * ul.PER_PAGE: page * ul.PER_PAGE], ov, path, src)
