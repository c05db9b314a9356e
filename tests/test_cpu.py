"""torch's thread count: the app pins one thread for a drawing's latency; a pass over many images
(data health's embedding, the Errors page's evaluation) takes every core and gives the pin back."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from charlab import cpu
from charlab.predict import predictor_from_model


class _Counting(nn.Module):
    """Records torch's thread count at every forward."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(28 * 28, 3)
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.head(x.flatten(1))


@pytest.fixture
def pinned(monkeypatch):
    """A quiet two-core machine with torch pinned to one thread, as the app runs it."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(cpu, "cpu_cores", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_bulk_pass_uses_every_core_and_one_drawing_keeps_the_pin(pinned):
    pred = predictor_from_model(_Counting(), ["a", "b", "c"])
    net = pred.bulk_models()[0]  # the copy that bulk prediction runs
    pred.probs(np.zeros((cpu.BULK_ROWS + 44, 1, 28, 28), np.uint8), batch_size=100)
    assert net.seen == [2, 2, 2]
    assert torch.get_num_threads() == 1  # given back
    net.seen.clear()
    pred.probs(np.zeros((1, 1, 28, 28), np.uint8))
    assert net.seen == [1]


def test_nested_passes_share_one_change_and_a_pinned_count_or_a_busy_machine_wins(pinned, monkeypatch):
    with cpu.bulk_threads(10_000):
        with cpu.bulk_threads(10_000):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2  # the outer pass still runs
    assert torch.get_num_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 3.0, 3.0))  # other processes keep the cores busy
    with cpu.bulk_threads(10_000):
        assert torch.get_num_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's own choice
    with cpu.bulk_threads(10_000):
        assert torch.get_num_threads() == 1
