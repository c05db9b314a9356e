"""Runs page: every training run with its state and best scores, live curves (refreshed every
~2 s while something trains), stop / resume / delete, and a config diff between two runs."""
import streamlit as st

import ui
import ui_export
import ui_runs
from charlab.config import to_dict
from charlab.errors import CharlabError
from charlab.runs import delete_run, kick_queue, list_runs, read_config, resume_run, stop_run

ui.require_app_frame()

REFRESH_S = 2.0

st.title("Runs")
root = ui.runs_root()
try:
    runs = list_runs(root)
except CharlabError as e:
    ui.error(e)
    st.stop()
if not runs:
    st.info("No runs yet. Start one on the **Train** page: it trains in the background, and its curves "
            "appear here live. From a terminal: `python -m charlab train --source synthetic --model "
            "kaggle_cnn --epochs 10 --background`.")
    st.page_link("pages/train.py", label="Go to Train", icon=ui.ICONS["train"])
    st.stop()

by_id = {r.id: r for r in runs}
ids = list(by_id)
live = any(r.is_active for r in runs)

# Only poll while something trains; when the last active run ends, one full rerun turns polling off.
@st.fragment(run_every=REFRESH_S if live else None)
def live_view() -> None:
    now = list_runs(root)
    sweeps = sorted({r.sweep for r in now if r.sweep})
    if sweeps:  # a sweep's trials are ordinary runs: show one sweep, or everything
        group = st.segmented_control("Show", ["all runs"] + sweeps, default="all runs", required=True,
                                     key="runs_group", format_func=lambda g: g if g == "all runs" else f"sweep {g}")
        if group != "all runs":
            now = [r for r in now if r.sweep == group]
    ui_runs.runs_table(now)
    ui_runs.run_notes(now)
    now_ids = [r.id for r in now]
    labels = {r.id: ui_runs.STATE_ICON.get(r.state, "") for r in now}
    active_ids = [r.id for r in now if r.is_active]
    default = list(dict.fromkeys(active_ids + now_ids[:3]))[:4]  # what trains now, then the latest
    selected = st.multiselect("Runs to plot", now_ids, default=default, key="runs_sel",
                              format_func=lambda i: f"{labels[i]} {i}")
    ui_runs.curves([r for r in now if r.id in selected])
    if live and not any(r.is_active for r in now):
        st.rerun()


live_view()
if live:
    st.caption(f"Live: refreshing every {REFRESH_S:g} s while a run trains.")
if any(r.queue_position for r in runs) and not any(r.is_training for r in runs):
    # the trainer that would have started them died (kill -9, a reboot); listing never starts one
    w1, w2 = st.columns([4, 1], vertical_alignment="center")
    w1.warning("Runs are queued but nothing trains: the run ahead of them ended without starting them.",
               icon=":material/schedule:")
    if w2.button("Start the queue", key="runs_kick", icon=":material/play_arrow:", width="stretch"):
        kick_queue(root)
        st.rerun()


st.divider()
act, diff = st.columns([1, 1.25], gap="large")
with act:
    st.subheader("Manage a run")
    run_id = st.selectbox("Run", ids, key="runs_manage",
                          format_func=lambda i: f"{ui_runs.STATE_ICON.get(by_id[i].state, '')} {i}")
    r = by_id[run_id]
    b1, b2, b3 = st.columns(3)
    try:
        if b1.button("Stop", icon=":material/stop:", key="runs_stop", disabled=not r.can_stop, width="stretch",
                     help="Finishes the current batch, saves last.pt and ends 'stopped'." if r.can_stop
                     else r.why_not("stop")):
            stop_run(r.run_dir)
            st.toast(f"Asked {run_id} to stop.")
            st.rerun()
        if b2.button("Resume", icon=":material/play_arrow:", key="runs_resume", disabled=not r.can_resume,
                     width="stretch", help="Continues from last.pt with the same curves." if r.can_resume
                     else r.why_not("resume")):
            resume_run(r.run_dir)
            st.toast(f"Resumed {run_id}.")
            st.rerun()
        confirm = st.checkbox("I want to delete this run and its checkpoints", key="runs_confirm",
                              disabled=not r.can_delete)
        if b3.button("Delete", icon=":material/delete:", key="runs_delete", disabled=not confirm or not r.can_delete,
                     width="stretch", help=None if r.can_delete else r.why_not("delete")):
            delete_run(r.run_dir)
            st.toast(f"Deleted {run_id}.")
            st.rerun()
    except CharlabError as e:
        ui.error(e)
    ui_export.export_button(str(r.run_dir), "runs_export", r.id)  # its best.pt (last.pt before the first best)
    if r.state == ui_runs.STALLED or r.foreign:
        st.caption(f"Last finished batch: {ui_runs.clock(r.last_progress)}"
                   + (f" · trains on {r.host}" if r.foreign else ""))
    if r.error_tail:
        st.caption(f"Why it is {r.state}:")
        st.code(r.error_tail, language=None, wrap_lines=True)
with diff:
    st.subheader("Compare configs")
    if len(ids) < 2:
        st.caption("A second run is needed to compare configs.")
    else:
        d1, d2 = st.columns(2)
        # the short ids the curves' legend uses: full ids are cut off in half a column at 1280 px
        a = d1.selectbox("Run A", ids, index=0, key="runs_diff_a", format_func=ui.short_run_id)
        b = d2.selectbox("Run B", ids, index=1, key="runs_diff_b", format_func=ui.short_run_id)
        try:
            ca, cb = (ui.flatten(to_dict(read_config(by_id[x].run_dir))) for x in (a, b))
        except CharlabError as e:
            ui.error(e)
        else:
            rows = [{"setting": k, "A": str(ca.get(k, "—")), "B": str(cb.get(k, "—"))}
                    for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]
            if rows:
                st.dataframe(rows, hide_index=True)
            else:
                st.caption("The two configs are identical.")
