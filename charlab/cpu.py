"""How many CPU threads torch uses, in one place: training, bulk prediction and the app's
one-image predictions want different counts, and torch's count is one per process."""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

import torch


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_cpu_threads(world_size: int = 1) -> int:
    """All cores (split across DDP ranks) on a quiet machine, ONE thread when other
    processes keep the cores busy: measured on the 2-core sandbox at load ~10, LeNet trained
    at 1,770 img/s on 1 thread and 54 img/s on 2, because OpenMP's spinning workers wait on
    a descheduled partner at every op. OMP_NUM_THREADS, when set, wins."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = cpu_cores()
    threads = max(1, cores // world_size)
    try:
        others = os.getloadavg()[0] - torch.get_num_threads() * world_size  # load not caused by us
    except OSError:
        others = 0.0
    if threads > 1 and others >= 0.5 * cores:
        threads = 1
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


BULK_ROWS = 256  # from this many images a prediction pass is bulk work (a drawing is one)
_bulk_lock = threading.Lock()
_bulk = {"depth": 0, "before": 0}  # passes running now, and the count to restore when the last ends


@contextlib.contextmanager
def bulk_threads(rows: int) -> Iterator[None]:
    """A pass over `rows` images on the threads set_cpu_threads chooses, then back to the count
    before. The app pins torch to one thread for a drawing's latency (ui.predictor), and that
    count is the process's: without this, data health embedded 60,000 images on one of two
    cores. Nested and concurrent passes share one change; the last to end restores it."""
    if rows < BULK_ROWS:
        yield
        return
    with _bulk_lock:
        if _bulk["depth"] == 0:
            _bulk["before"] = torch.get_num_threads()
            set_cpu_threads()
        _bulk["depth"] += 1
    try:
        yield
    finally:
        with _bulk_lock:
            _bulk["depth"] -= 1
            if _bulk["depth"] == 0 and torch.get_num_threads() != _bulk["before"]:
                torch.set_num_threads(_bulk["before"])
