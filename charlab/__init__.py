"""charlab: the PyTorch core of the handwritten-character lab. Never imports streamlit.

The public API is imported lazily (PEP 562), so `import charlab` stays cheap for the
app's cold start and for CLI commands that never touch torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "DataConfig": "charlab.config", "AugmentConfig": "charlab.config", "ModelConfig": "charlab.config",
    "TrainConfig": "charlab.config", "to_dict": "charlab.config", "from_dict": "charlab.config",
    "CharlabError": "charlab.errors", "DataError": "charlab.errors", "CheckpointError": "charlab.errors",
    "RunError": "charlab.errors", "UnknownNameError": "charlab.errors",
    "CharDataset": "charlab.data.dataset",
    "load_source": "charlab.data", "load_splits": "charlab.data", "Splits": "charlab.data",
    "preprocess_image": "charlab.data", "preprocess_ink": "charlab.data", "class_stats": "charlab.data",
    "ClassStats": "charlab.data", "source_counts": "charlab.data",
    "Checkpoint": "charlab.checkpoint", "save_checkpoint": "charlab.checkpoint", "load_checkpoint": "charlab.checkpoint",
    "register_model": "charlab.models", "list_models": "charlab.models", "create_model": "charlab.models",
    "model_info": "charlab.models", "count_parameters": "charlab.models", "replace_head": "charlab.models",
    "augment_batch": "charlab.augment", "augment_batch_with_params": "charlab.augment", "preview": "charlab.augment",
    "Preview": "charlab.augment", "get_preset": "charlab.augment", "list_presets": "charlab.augment",
    "AUGMENT_PRESETS": "charlab.augment",
    "BALANCE_STRATEGIES": "charlab.balance", "effective_counts": "charlab.balance", "oversample": "charlab.balance",
    "class_weights": "charlab.balance", "epoch_indices": "charlab.balance",
    "get_recipe": "charlab.recipes", "list_recipes": "charlab.recipes", "RECIPES": "charlab.recipes",
    "run_sweep": "charlab.sweep", "PruningCallback": "charlab.sweep",
    "export_model": "charlab.export", "export_bytes": "charlab.export", "read_metadata": "charlab.export",
    "Predictor": "charlab.predict", "load_predictor": "charlab.predict", "resolve_checkpoint": "charlab.predict",
    "Interpretation": "charlab.interpret", "grad_cam": "charlab.saliency", "input_gradient": "charlab.saliency",
    "find_suspects": "charlab.suspects", "SuspectReport": "charlab.suspects",
    "out_of_fold_probs": "charlab.suspects", "audit": "charlab.suspects", "diagnose": "charlab.suspects",
    "LabelOverrides": "charlab.labels", "apply_overrides": "charlab.labels", "default_path_for": "charlab.labels",
    "fit": "charlab.training", "FitResult": "charlab.training", "train_one_epoch": "charlab.training",
    "evaluate": "charlab.training", "EarlyStopping": "charlab.training",
    "RunInfo": "charlab.runs", "create_run": "charlab.runs", "launch": "charlab.runs", "list_runs": "charlab.runs",
    "run_info": "charlab.runs", "read_metrics": "charlab.runs", "read_config": "charlab.runs",
    "stop_run": "charlab.runs", "resume_run": "charlab.runs", "delete_run": "charlab.runs",
    "resolve_run": "charlab.runs", "kick_queue": "charlab.runs", "RunDir": "charlab.runs",
}


def __getattr__(name: str):
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(f"module 'charlab' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
