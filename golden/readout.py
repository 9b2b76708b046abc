"""Readouts: from hidden spikes ``[T, B, N]`` to class scores ``[B, C]``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LeakyReadout", "LinearReadout", "make_readout"]


class LeakyReadout(nn.Module):
    """Non-firing leaky integrator: ``V[t] = (1 - 1/tau) V[t-1] + W s[t] + b``.

    ``forward`` returns the membrane trace ``[T, B, C]``; :meth:`scores` sums
    its softmax over time, ``sum_t softmax(V[t])``, which the DelRec recipe
    feeds to the cross-entropy as logits.
    """

    def __init__(self, in_features: int, classes: int, tau: float = 1.05, bias: bool = True):
        super().__init__()
        if not tau >= 1:
            raise ValueError(f"Readout time constant tau must be >= 1 step, not {tau!r}")
        self.linear = nn.Linear(in_features, classes, bias=bias)
        self.decay = 1.0 - 1.0 / tau

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        current = self.linear(spikes)
        if self.decay == 0:
            return current
        out = []
        v = torch.zeros_like(current[0])
        for t in range(current.shape[0]):
            v = self.decay * v + current[t]
            out.append(v)
        return torch.stack(out)

    @staticmethod
    def scores(trace: torch.Tensor) -> torch.Tensor:
        return F.softmax(trace, dim=-1).sum(0)


class LinearReadout(nn.Module):
    """Linear readout summed over time: scores ``sum_t (W s[t] + b)``."""

    def __init__(self, in_features: int, classes: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, classes, bias=bias)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.linear(spikes)

    @staticmethod
    def scores(trace: torch.Tensor) -> torch.Tensor:
        return trace.sum(0)


def make_readout(kind: str, in_features: int, classes: int, tau: float, bias: bool = True):
    if kind == "leaky":
        return LeakyReadout(in_features, classes, tau=tau, bias=bias)
    if kind == "linear":
        return LinearReadout(in_features, classes, bias=bias)
    raise ValueError(f"Readout must be 'leaky' or 'linear', not {kind!r}")
