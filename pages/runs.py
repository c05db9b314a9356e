"""Runs page: every training run with its state and best scores, live curves (refreshed every
~2 s while something trains), stop / resume / delete, and a config diff between two runs."""
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative
from plotly.subplots import make_subplots

import ui
from charlab.config import to_dict
from charlab.errors import CharlabError
from charlab.runs import delete_run, list_runs, read_config, read_metrics, resume_run, stop_run

ui.require_app_frame()

ACTIVE = ("running", "queued")
STATE_ICON = {"running": "●", "queued": "…", "done": "✓", "stopped": "■", "failed": "✗", "interrupted": "!"}
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
live = any(r.state in ACTIVE for r in runs)


def epoch_text(r) -> str:
    text = f"{r.epoch}/{r.epochs}"
    step, steps = r.status.get("step"), r.status.get("steps")
    if r.state == "running" and step and steps:  # within-epoch progress from the heartbeat
        text += f" (+{min(step / steps, 1):.0%})"
    return text


def runs_table(runs) -> None:
    sweeps = any(r.sweep for r in runs)
    st.dataframe(
        [{"run": r.id, "state": f"{STATE_ICON.get(r.state, '')} {r.state}"
          + (f" (#{r.queue_position})" if r.state == "queued" and r.queue_position else ""),
          "epoch": epoch_text(r), "best val acc": r.best_val_acc, "best macro-F1": r.best_val_macro_f1,
          "duration": ui.fmt_duration(r.duration_s), "model": r.model, "source": r.source,
          **({"sweep": f"{r.sweep} #{r.status.get('trial', '')}" if r.sweep else ""} if sweeps else {})}
         for r in runs],
        hide_index=True,
        column_config={
            "best val acc": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
            "best macro-F1": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
        },
    )


def curves(selected: list) -> None:
    if not selected:
        st.caption("Pick runs above to plot their curves.")
        return
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Loss", "Accuracy", "Macro-F1 (val)"),
                        horizontal_spacing=0.06)
    palette = qualitative.Plotly
    empty, plotted, last_epoch = [], 0, 1
    for n, run in enumerate(selected):
        run_id = run.id
        rows = read_metrics(run.run_dir)
        rows = [r for r in rows if "epoch" in r and "val_loss" in r]  # epoch rows (not per-step ones)
        if not rows:
            empty.append(run_id)
            continue
        plotted += 1
        color = palette[n % len(palette)]
        ep = [r["epoch"] for r in rows]
        last_epoch = max(last_epoch, max(ep))
        for col, key, dash, label in ((1, "train_loss", "solid", "train"), (1, "val_loss", "dash", "val"),
                                      (2, "train_acc", "solid", "train"), (2, "val_acc", "dash", "val"),
                                      (3, "val_macro_f1", "dash", "val")):
            ys = [r.get(key) for r in rows]
            if all(y is None for y in ys):
                continue
            fig.add_trace(go.Scatter(x=ep, y=ys, mode="lines+markers", marker_size=4,
                                     line=dict(color=color, dash=dash), legendgroup=run_id,
                                     name=f"{ui.short_run_id(run_id)} · {label}", showlegend=col == 1,
                                     hovertemplate=f"{run_id}<br>{key} %{{y:.4f}} at epoch %{{x}}<extra></extra>"),
                          row=1, col=col)
    if not plotted:
        st.caption("No finished epoch yet: " + ", ".join(empty) + ". The curves appear after the first one.")
        return
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(font_size=11))
    # whole epochs only (Plotly's automatic ticks would put 1.5 between 1 and 2)
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=max(1, -(-last_epoch // 8)))
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_yaxes(tickformat=".0%", row=1, col=3)
    st.plotly_chart(fig, key="runs_curves")
    if empty:
        st.caption("No finished epoch yet: " + ", ".join(empty))
    st.caption("Solid: training split · dashed: validation split.")


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
    runs_table(now)
    now_ids = [r.id for r in now]
    state = {r.id: r.state for r in now}
    active_ids = [r.id for r in now if r.state in ACTIVE]
    default = list(dict.fromkeys(active_ids + now_ids[:3]))[:4]  # what trains now, then the latest
    selected = st.multiselect("Runs to plot", now_ids, default=default, key="runs_sel",
                              format_func=lambda i: f"{STATE_ICON.get(state[i], '')} {i}")
    curves([r for r in now if r.id in selected])
    if live and not any(r.state in ACTIVE for r in now):
        st.rerun()


live_view()
if live:
    st.caption(f"Live: refreshing every {REFRESH_S:g} s while a run trains.")

st.divider()
act, diff = st.columns([1, 1.6], gap="large")
with act:
    st.subheader("Manage a run")
    run_id = st.selectbox("Run", ids, key="runs_manage", format_func=lambda i: f"{STATE_ICON.get(by_id[i].state, '')} {i}")
    r = by_id[run_id]
    b1, b2, b3 = st.columns(3)
    try:
        if b1.button("Stop", icon=":material/stop:", key="runs_stop", disabled=r.state not in ACTIVE, width="stretch",
                     help="Finishes the current batch, saves last.pt and ends 'stopped'."):
            stop_run(r.run_dir)
            st.toast(f"Asked {run_id} to stop.")
            st.rerun()
        if b2.button("Resume", icon=":material/play_arrow:", key="runs_resume", disabled=r.state in ACTIVE or r.state == "done", width="stretch",
                     help="Continues from last.pt with the same curves."):
            resume_run(r.run_dir)
            st.toast(f"Resumed {run_id}.")
            st.rerun()
        confirm = st.checkbox("I want to delete this run and its checkpoints", key="runs_confirm",
                              disabled=r.state in ACTIVE)
        if b3.button("Delete", icon=":material/delete:", key="runs_delete", disabled=not confirm or r.state in ACTIVE, width="stretch"):
            delete_run(r.run_dir)
            st.toast(f"Deleted {run_id}.")
            st.rerun()
    except CharlabError as e:
        ui.error(e)
    if r.error_tail:
        st.caption(f"Why it is {r.state}:")
        st.code(r.error_tail, language=None)
with diff:
    st.subheader("Compare configs")
    if len(ids) < 2:
        st.caption("A second run is needed to compare configs.")
    else:
        d1, d2 = st.columns(2)
        a = d1.selectbox("Run A", ids, index=0, key="runs_diff_a")
        b = d2.selectbox("Run B", ids, index=1, key="runs_diff_b")
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
