"""The download button for a model exported by charlab.export (Runs and Draw pages)."""
from __future__ import annotations

import os

import streamlit as st

from charlab.errors import CharlabError


@st.cache_data(max_entries=4, show_spinner=False)
def exported_model(ref: str, fmt: str, stamp: tuple) -> bytes:
    """`ref` (run, checkpoint or A+B ensemble) as an exported file; `stamp` (the checkpoints'
    paths and mtimes) makes a rewritten checkpoint export afresh."""
    from charlab.export import export_bytes

    return export_bytes(ref, fmt)


def file_stem(ref: str) -> str:
    """The download's file name: a run's id, a checkpoint's stem, or "ensemble-N"."""
    from pathlib import Path

    from charlab.predict import ENSEMBLE_SEP

    parts = [x for x in ref.split(ENSEMBLE_SEP) if x.strip()] if not Path(ref).exists() else [ref]
    if len(parts) > 1:
        return f"ensemble-{len(parts)}"
    p = Path(parts[0] if parts else ref)
    return p.name if p.is_dir() else p.stem


def export_button(ref: str, key: str, name: str | None = None, fmt: str = "onnx", width: str = "content") -> None:
    """A download button for `ref` as an ONNX file that runs without charlab (onnxruntime + numpy).

    The file is made only when the button is clicked (Streamlit calls `data` then, off the
    script thread; the callable touches no st.* API) and cached per checkpoint version."""
    from charlab.export import SUFFIXES
    from charlab.predict import resolve_refs

    try:
        paths = resolve_refs(ref)
    except CharlabError as e:
        st.download_button(f"Download {fmt.upper()}", b"", disabled=True, key=key, help=str(e),
                           icon=":material/download:", width=width)
        return
    stamp = tuple((str(p), os.stat(p).st_mtime_ns) for p in paths)
    st.download_button(f"Download {fmt.upper()}", lambda: exported_model(ref, fmt, stamp),
                       file_name=f"{name or file_stem(ref)}{SUFFIXES[fmt]}", mime="application/octet-stream", key=key,
                       on_click="ignore", icon=":material/download:", width=width,
                       help="The model as one ONNX file with its class names and preprocessing inside: "
                            "it runs with onnxruntime and numpy alone (README, Export)."
                            + (" The ensemble becomes one graph that averages its members." if len(paths) > 1 else ""))
