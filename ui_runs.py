"""Rendering of runs for the Runs and Train pages: state labels, the runs table, the notes a
run needs (stalled, another host, a damaged file) and the live curves. Every decision about
what a state allows comes from charlab.runs.RunInfo; this module only draws."""
from __future__ import annotations

import time

import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative
from plotly.subplots import make_subplots

import ui
from charlab.runs import METRICS, STALLED, STATE_ICON, RunInfo, read_metrics_checked


def state_label(r: RunInfo) -> str:
    text = f"{STATE_ICON.get(r.state, '')} {r.state}"
    if r.queue_position:
        text += f" (#{r.queue_position})"
    return text + (f" @ {r.host}" if r.foreign else "")


def clock(t) -> str:
    """A unix time as the wall-clock time (with the date when it is not today)."""
    if not t:
        return "never"
    lt = time.localtime(float(t))
    return time.strftime("%H:%M:%S" if lt[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M", lt)


def epoch_text(r: RunInfo) -> str:
    text = f"{r.epoch}/{r.epochs}"
    step, steps = r.status.get("step"), r.status.get("steps")
    if r.is_training and step and steps:  # within-epoch progress from the heartbeat
        text += f" (+{min(step / steps, 1):.0%})"
    return text


def runs_table(runs: list[RunInfo]) -> None:
    sweeps = any(r.sweep for r in runs)
    st.dataframe(
        [{"run": r.id, "state": state_label(r), "epoch": epoch_text(r), "best val acc": r.best_val_acc,
          "best macro-F1": r.best_val_macro_f1, "duration": ui.fmt_duration(r.duration_s),
          "source": r.source, **({"sweep": f"{r.sweep} #{r.status.get('trial', '')}" if r.sweep else ""}
                                 if sweeps else {})}
         for r in runs],
        hide_index=True,
        column_config={
            "best val acc": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
            "best macro-F1": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
            # the model is in the run id; a long source path is cut here (hover shows it) rather
            # than pushing the table into a sideways scroll at 1280 px
            "source": st.column_config.TextColumn(width="medium"),
        },
    )


def run_notes(runs: list[RunInfo]) -> None:
    """A line for each run a user should look at: stalled, trained elsewhere, unreadable."""
    for r in runs:
        if r.state == STALLED:
            idle = ui.fmt_duration(time.time() - r.last_progress) if r.last_progress else "a long time"
            st.warning(f"**{r.id}** is stalled: its process{' on ' + r.host if r.foreign else ''} is alive but has "
                       f"finished no batch since {clock(r.last_progress)} ({idle}). Stop it, or look at its "
                       "train.log.", icon=":material/pause_circle:")
        elif r.foreign and r.is_active:
            st.caption(f"{ui.short_run_id(r.id)} trains on **{r.host}**; its state comes from its heartbeat "
                       f"(last {clock(r.status.get('heartbeat'))}).")
        if r.unreadable:
            st.error(f"**{r.id}**: {r.error_tail}. It is shown failed and never started.", icon=":material/error:")


def curves(selected: list[RunInfo]) -> None:
    if not selected:
        st.caption("Pick runs above to plot their curves.")
        return
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Loss", "Accuracy", "Macro-F1 (val)"),
                        horizontal_spacing=0.06)
    palette = qualitative.Plotly
    empty, damaged, plotted, last_epoch = [], [], 0, 1
    for n, run in enumerate(selected):
        rows, bad = read_metrics_checked(run.run_dir)
        if bad:
            damaged.append(f"{ui.short_run_id(run.id)} (line{'s' if len(bad) > 1 else ''} "
                           f"{', '.join(map(str, bad[:5]))}{'…' if len(bad) > 5 else ''})")
        rows = [r for r in rows if "epoch" in r and "val_loss" in r]  # epoch rows (not per-step ones)
        if not rows:
            empty.append(run.id)
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
                                     line=dict(color=color, dash=dash), legendgroup=run.id,
                                     name=f"{ui.short_run_id(run.id)} · {label}", showlegend=col == 1,
                                     hovertemplate=f"{run.id}<br>{key} %{{y:.4f}} at epoch %{{x}}<extra></extra>"),
                          row=1, col=col)
    if damaged:
        st.warning(f"Corrupt lines in {METRICS}, skipped in the curves: {'; '.join(damaged)}.",
                   icon=":material/warning:")
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
