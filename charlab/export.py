"""Export a run, a checkpoint or an ensemble to ONNX or TorchScript, so a model leaves the lab.

    from charlab.export import export_model, read_metadata
    export_model("runs/2024…-kaggle_cnn-ab12", "onnx", "model.onnx")
    export_model("runs/a+runs/b", "torchscript", "ensemble.pt")     # one graph, probabilities averaged
    python -m charlab export --run REF --format onnx --out model.onnx

The exported graph is the Predictor's `probs`: float32 N×1×H×W in [0, 1] (ink bright on dark,
as charlab prepares it) -> float32 N×C probabilities, the members' softmax averaged (each
member's classes reordered to the first member's order), with a dynamic batch axis. What a
deployer needs to prepare a raw image travels inside the file: class names, input shape,
polarity and every preprocessing step with its parameters (ONNX `metadata_props`; TorchScript
`_extra_files["charlab.json"]`). The README shows the ONNX file run with onnxruntime, numpy and
Pillow alone.

ONNX uses torch's TorchScript-based exporter (`dynamo=False`): the zoo's small CNNs convert
exactly with it, and it needs no onnxscript. Only `onnx` (to write the metadata and check the
graph) is needed to export; onnxruntime only to run the file.
"""
from __future__ import annotations

import copy
import io
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from .errors import CharlabError
from .registry import Registry

INPUT_NAME, OUTPUT_NAME = "image", "probs"
SIDE_NAME = "side"  # the second input of a side-input model (DataConfig.side_inputs): float32 N×G
METADATA_FILE = "charlab.json"  # the TorchScript extra file that holds the metadata
OPSET = 17  # every op the zoo uses exists in opset 17, which onnxruntime releases since 1.14 run
METADATA_VERSION = 1

# name -> writer(graph, example, metadata) -> bytes; ordered: onnx, the default, first
FORMATS: Registry[Callable[[nn.Module, torch.Tensor, dict], bytes]] = Registry("export format", ordered=True)
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}  # the file name the app's download button offers


class ProbabilityGraph(nn.Module):
    """Members' softmax probabilities averaged in one graph: N×1×H×W -> N×C (Predictor.probs)."""

    def __init__(self, models: list[nn.Module], perms: list[Optional[torch.Tensor]]):
        super().__init__()
        self.members = nn.ModuleList(models)
        # A member whose classes come in another order gets an index that reorders its class axis.
        for i, perm in enumerate(perms):
            self.register_buffer(f"perm{i}", perm.cpu().long() if perm is not None else None)

    def forward(self, x: torch.Tensor, side: Optional[torch.Tensor] = None) -> torch.Tensor:
        acc = None
        extra = () if side is None else (side,)  # a side-input model's float N×G
        for i, model in enumerate(self.members):
            p = torch.softmax(model(x, *extra).float(), dim=1)  # N×C
            perm = getattr(self, f"perm{i}")
            if perm is not None:
                p = p.index_select(1, perm)
            acc = p if acc is None else acc + p
        return acc / len(self.members)


def metadata(predictor) -> dict[str, str]:
    """What a deployer needs to prepare a raw image and read the output, as string key/values."""
    from . import __version__
    from .data import preprocess as pp
    from .predict import ENSEMBLE_SEP

    d = predictor.data_config
    h, w = (int(v) for v in predictor.input_shape)
    spec = {
        "image_size": d.image_size, "grayscale": d.grayscale, "invert": d.invert, "crop": d.crop,
        "margin": d.margin, "threshold": d.threshold,
        # not None: the ink is redrawn as pen strokes of this width (charlab.data.strokes) before
        # the resize; only charlab itself prepares such a model's images exactly
        "stroke_norm": getattr(d, "stroke_norm", None),
        # the fixed constants of charlab.data.preprocess, so a re-implementation matches it exactly
        "ink_level": pp._INK_LEVEL, "speck_mass": pp._SPECK_MASS, "speck_min_pixels": 500,
        "blank_peak": pp._BLANK_PEAK, "resample": "bilinear", "reducing_gap": 3.0, "reduce_unit": 8,
        "steps": [
            "shrink: a short side of at least 16*image_size is first reduced by the integer factor "
            "min(w, h) // (reduce_unit*image_size) with PIL Image.reduce (box average)",
            "grayscale: PIL convert('L'); an image with a transparent background uses its alpha as the ink; "
            "other images with alpha are composited onto white first",
            "polarity: level = the border pixels' upper median (np.partition at len//2); invert='auto' flips "
            "(255 - x) when level > (min + max) / 2, 'yes' always, 'no' never; in auto mode subtract the "
            "(flipped) level and clip at 0; an image whose peak is below blank_peak is blank (all zero); "
            "else stretch so the peak is 255: (x*255 + peak//2) // peak",
            "crop (if crop): bounding box of pixels > peak*ink_level; with at least speck_min_pixels such "
            "pixels, trim speck_mass of the ink count from each side (cumulative row/column counts)",
            "pad: a square (an H:W box for a wide input) of side ceil(box_side / (1 - 2*margin)) centred on the "
            "box, zero outside the image (margin 0 when not cropping)",
            "resize to W×H with PIL BILINEAR, reducing_gap 3.0; stretch the peak back to 255 as above",
            "threshold (if set): 255 where x >= threshold*255, else 0",
            "input: float32 x/255 as N×1×H×W",
        ],
    }
    side = _side_spec(predictor)
    return {
        **({"side_inputs": json.dumps(side)} if side else {}),
        "charlab.metadata_version": str(METADATA_VERSION),
        "charlab.version": __version__,
        "classes": json.dumps(list(predictor.classes)),
        "input_shape": json.dumps([h, w]),
        "input": f"{INPUT_NAME}: float32 N×1×{h}×{w} in [0, 1], ink bright (1) on a dark (0) background",
        "output": f"{OUTPUT_NAME}: float32 N×{predictor.num_classes} class probabilities in the order of "
                  f"'classes'" + (f" (the mean of {len(predictor.models)} members' softmax)"
                                  if predictor.is_ensemble else " (softmax)"),
        "polarity": d.invert,
        "preprocess": json.dumps(spec),
        "members": json.dumps(predictor.name.split(ENSEMBLE_SEP)),
        "model": json.dumps({"name": predictor.config.model.name, "kwargs": predictor.config.model.kwargs}),
    }


def _side_spec(predictor) -> Optional[dict]:
    """How a side-input model's second input is computed, for a re-implementation; None without one."""
    kind = predictor.side_inputs
    if not kind:
        return None
    from .data.geometry import side_kind

    spec = {"name": SIDE_NAME, "kind": kind, "dim": side_kind(kind).dim, "definition": side_kind(kind).doc,
            "box": "the crop step's ink box (speck trim included), on the image after the shrink step; "
                   "top/bottom/left/right inclusive",
            "page": "the whole image the character is in (the drawing canvas, the file's frame)"}
    if predictor.side_optional:  # DataConfig.side_dropout: the graph also reads images without a page
        spec["dim"] += 1
        spec["present"] = ("the last column: 1 where the numbers were measured on a page; 0 (with zeros before it) "
                           "for an image without one, such as a photo framed at will: the pixels alone are read")
    return spec


def exported_side(predictor, side) -> Optional["np.ndarray"]:
    """float32 N×G side vectors (a CharDataset's, Predictor.prepare_inputs') as the exported graph
    takes them: with the present flag (1) appended for a model whose vector is optional; None
    for an image-only model."""
    import numpy as np

    if side is None or not predictor.side_inputs:
        return None
    s = torch.as_tensor(side).float().numpy()  # N×G
    return np.concatenate([s, np.ones((len(s), 1), np.float32)], axis=1) if predictor.side_optional else s


def _names(example: tuple) -> tuple[list[str], dict]:
    names = [INPUT_NAME, SIDE_NAME][:len(example)]
    return names, {**{n: {0: "batch"} for n in names}, OUTPUT_NAME: {0: "batch"}}


@FORMATS.register("onnx")
def _write_onnx(graph: nn.Module, example: tuple, meta: dict) -> bytes:
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is in requirements.txt
        raise CharlabError("ONNX export needs the onnx package (pip install -r requirements.txt)") from None
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript-based exporter announces its deprecation; it works
        warnings.simplefilter("ignore")
        names, axes = _names(example)
        torch.onnx.export(graph, example, buf, dynamo=False, input_names=names,
                          output_names=[OUTPUT_NAME], opset_version=OPSET, dynamic_axes=axes)
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.doc_string = "charlab", meta["output"]
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


@FORMATS.register("torchscript")
def _write_torchscript(graph: nn.Module, example: tuple, meta: dict) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Tracing records sizes as tensor ops, so the batch axis stays dynamic (the tests run other sizes).
        traced = torch.jit.trace(graph, example, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={METADATA_FILE: json.dumps(meta)})
    return buf.getvalue()


def export_bytes(ref, fmt: str = "onnx") -> bytes:
    """A run, checkpoint or "a+b" ensemble (or a loaded Predictor) -> the exported file's bytes."""
    from .predict import Predictor, load_predictor

    writer = FORMATS.get(fmt)
    predictor = ref if isinstance(ref, Predictor) else load_predictor(ref)
    if predictor.device.type != "cpu":
        predictor = load_predictor(predictor.paths)
    h, w = predictor.input_shape
    # A copy: the predictor's models may be shared (the app's cache) and tracing must not touch them.
    graph = copy.deepcopy(ProbabilityGraph(predictor.models, predictor.perms)).eval()
    g = torch.Generator().manual_seed(0)
    example = (torch.rand(2, 1, int(h), int(w), generator=g),)  # N×1×H×W
    if predictor.side_inputs:
        example += (torch.rand(2, _side_spec(predictor)["dim"], generator=g),)  # N×G
    with torch.no_grad():
        return writer(graph, example, metadata(predictor))


def export_model(ref, fmt: str, out: str | os.PathLike) -> Path:
    """Write the export of `ref` to `out` atomically and return the path."""
    from .io import atomic_write_bytes

    data = export_bytes(ref, fmt)
    out = Path(out)
    atomic_write_bytes(out, data)
    return out


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of an exported file (ONNX or TorchScript, told apart by content), as `metadata` wrote it."""
    path = Path(path)
    if not path.is_file():
        raise CharlabError(f"no exported model at {path}")
    with open(path, "rb") as f:
        is_zip = f.read(2) == b"PK"  # a TorchScript archive is a zip file; an ONNX file a protobuf
    if not is_zip:
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # protobuf's DecodeError and friends
            raise CharlabError(f"{path} is neither an ONNX file nor a TorchScript archive ({type(e).__name__})") from None
        return {p.key: p.value for p in proto.metadata_props}
    files = {METADATA_FILE: ""}
    try:
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    except RuntimeError as e:
        raise CharlabError(f"{path} is not a TorchScript archive: {str(e).splitlines()[0]}") from None
    return json.loads(files[METADATA_FILE]) if files[METADATA_FILE] else {}


def onnx_session(model: bytes | str | os.PathLike, threads: Optional[int] = None):
    """An onnxruntime CPU session over an exported file or its bytes (`threads`: intra-op threads)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - onnxruntime is in requirements.txt
        raise CharlabError("running an ONNX file needs onnxruntime (pip install -r requirements.txt)") from None
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
    src = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def compare(predictor, run_exported: Callable, images, batch_size: int = 256, side=None) -> dict:
    """Exported graph vs the torch Predictor on uint8 (or [0,1] float) N×1×H×W images (and, for a
    side-input model, their float N×G `side` vectors).

    `run_exported(x[, side])` maps float32 numpy N×1×H×W to N×C probabilities. Returns the argmax
    agreement (share of images), the largest |Δp| over all images and classes, and the count.
    """
    import numpy as np

    x = torch.as_tensor(images)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()  # N×1×H×W in [0, 1]
    ref = predictor.probs(x, batch_size=batch_size, side=side)  # N×C
    s = exported_side(predictor, side)  # N×G (+1: the present flag)
    got = np.concatenate([np.asarray(run_exported(x[i:i + batch_size].numpy(),
                                                  *(() if s is None else (s[i:i + batch_size],))))
                          for i in range(0, len(x), batch_size)])  # N×C
    return {"n": int(len(x)), "agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
            "max_abs_diff": float(np.abs(ref - got).max())}


def runner(fmt: str, data: bytes) -> Callable:
    """float32 numpy N×1×H×W (and N×G side vectors, for a side-input model) -> N×C probabilities,
    through the exported file's own runtime."""
    FORMATS.get(fmt)
    if fmt == "onnx":
        session = onnx_session(data)
        return lambda x, *side: session.run([OUTPUT_NAME], {INPUT_NAME: x, **({SIDE_NAME: side[0]} if side else {})})[0]
    module = torch.jit.load(io.BytesIO(data), map_location="cpu")

    def run(x, *side):
        with torch.inference_mode():
            return module(torch.from_numpy(x), *(torch.from_numpy(s) for s in side)).numpy()

    return run
