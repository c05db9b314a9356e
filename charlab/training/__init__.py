"""Training: `fit()` (one run, top to bottom), the plain `train_one_epoch` / `evaluate`
functions it is made of, the `TrainState` a resume restores, its callbacks, distillation from a
frozen teacher, and the DDP plumbing."""
from .callbacks import Checkpointing, EarlyStopping, StopRequest, TimeBudget
from .distill import DistillationLoss, Teacher, load_teacher
from .fit import FitResult, fit, init_model_config
from .logger import MetricLogger, SmoothedValue
from .loop import Batches, EpochBatches, evaluate, train_one_epoch
from .state import TrainState

__all__ = ["fit", "FitResult", "init_model_config", "train_one_epoch", "evaluate", "Batches", "EpochBatches",
           "TrainState", "EarlyStopping", "Checkpointing", "StopRequest", "TimeBudget", "MetricLogger", "SmoothedValue",
           "DistillationLoss", "Teacher", "load_teacher"]
