"""Training: `fit()` (one run, top to bottom), the plain `train_one_epoch` / `evaluate`
functions it is made of, its callbacks, and the DDP plumbing."""
from .callbacks import Checkpointing, EarlyStopping, StopRequest, TimeBudget
from .fit import FitResult, fit, init_model_config
from .logger import MetricLogger, SmoothedValue
from .loop import Batches, evaluate, train_one_epoch

__all__ = ["fit", "FitResult", "init_model_config", "train_one_epoch", "evaluate", "Batches", "EarlyStopping",
           "Checkpointing", "StopRequest", "TimeBudget", "MetricLogger", "SmoothedValue"]
