"""Spiking layers with learnable delays (DelRec) and their ablations.

* :class:`RecurrentLIF` -- a LIF population with recurrent connections that
  carry axonal delays (one per presynaptic neuron, fast hand-written
  backward), synaptic delays (one per connection), or no delay (the intrinsic
  one-step recurrence);
* :class:`DelayedLinear` -- the same spread mechanism on a feedforward
  projection (axonal or synaptic delays), for the feedforward-delay ablation.

All tensors are time-major: ``[T, B, N]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from delrec.arith import DELAY_KINDS

from .lif import LIFParameters, lif_sequence, lif_step
from .spread import Delays

__all__ = ["LIFLayer", "RecurrentLIF", "DelayedLinear"]


class LIFLayer(nn.Module):
    """A LIF population driven by an input current ``[T, B, N]`` -> spikes ``[T, B, N]``."""

    def __init__(self, size: int, params: LIFParameters):
        super().__init__()
        self.size = size
        self.params = params

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        return lif_sequence(current, self.params)


class RecurrentLIF(nn.Module):
    """A recurrent LIF population whose recurrent connections may have learnable delays.

    Parameters
    ----------
    size : int
        Number of neurons ``N``.
    params : LIFParameters
    delays : {"axonal", "synaptic", None}
        Real-valued delays per presynaptic neuron, per connection, or none
        (every recurrent spike arrives one step later).
    delay_init : (float, float)
        Initial delays are uniform in this range.
    sigma : float
        Initial spread parameter.
    learn_width : bool
        Per-neuron learned spread width.
    recurrent_dropout : float
        Dropout on the recurrent current.
    gain : float
        Gain of the orthogonal initialisation of the recurrent weights.
    normalize_spread : bool
        See :func:`~delrec.golden.spread.spread_kernel`.
    """

    def __init__(self, size: int, params: LIFParameters, delays: str | None = "axonal",
                 delay_init=(0.0, 30.0), sigma: float = 10.0, learn_width: bool = False,
                 recurrent_dropout: float = 0.0, gain: float = 1.0, normalize_spread: bool = False):
        super().__init__()
        if delays not in (*DELAY_KINDS, None):
            raise ValueError(f"Recurrent delays must be 'axonal', 'synaptic' or None, not {delays!r}")
        if not 0 <= recurrent_dropout < 1:
            raise ValueError(f"Recurrent dropout must be in [0, 1), not {recurrent_dropout!r}")
        self.size = size
        self.params = params
        self.delay_kind = delays
        self.recurrent_dropout = recurrent_dropout
        self.weight = nn.Parameter(torch.empty(size, size))
        nn.init.orthogonal_(self.weight, gain=gain)
        if delays is None:
            self.delays = None
        else:
            shape = (size,) if delays == "axonal" else (size, size)
            self.delays = Delays(shape, offset=1, init_range=delay_init, sigma=sigma,
                                 learn_width=learn_width, normalize=normalize_spread)

    def axonal_kernel(self) -> torch.Tensor:
        """Spread over taps ``1..K`` of each presynaptic neuron: ``[K, N]``."""
        if self.delays is None:
            return self.weight.new_ones(1, self.size)
        return self.delays.kernel()

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """``[T, B, N]`` input current -> ``[T, B, N]`` spikes."""
        mask = None
        if self.training and self.recurrent_dropout > 0:
            keep = 1 - self.recurrent_dropout
            mask = torch.bernoulli(torch.full_like(current, keep)) / keep
        if self.delay_kind == "synaptic":
            return self._synaptic_forward(current, mask)
        return lif_sequence(current, self.params, self.weight, self.axonal_kernel(), mask)

    def _synaptic_forward(self, current, mask):
        # Generic path: the weighted, spread spike of every connection is
        # scheduled in a future-oriented queue [K, B, N_post] (out of place,
        # plain autograd). Cost K times the axonal path per step.
        T, B, N = current.shape
        kernel = self.delays.kernel()  # [K, N_post, N_pre]
        K = kernel.shape[0]
        weighted = (kernel * self.weight).reshape(K * N, N)  # rows: (tap, post)
        queue = current.new_zeros(K, B, N)
        v = current.new_zeros(B, N)
        out = []
        for t in range(T):
            arriving = queue[0] if mask is None else queue[0] * mask[t]
            s, v = lif_step(v, current[t] + arriving, self.params)
            out.append(s)
            scheduled = (s @ weighted.t()).reshape(B, K, N).transpose(0, 1)
            queue = torch.cat([queue[1:], queue.new_zeros(1, B, N)]) + scheduled
        return torch.stack(out)

    def schedule_length(self) -> int:
        """Current length of the future-oriented scheduling buffer, in steps."""
        return 1 if self.delays is None else self.delays.schedule_length()


class DelayedLinear(nn.Module):
    """A feedforward projection whose connections have DelRec delays.

    ``out[t, :, i] = b_i + sum_j W[i, j] * sum_tau h_ij(tau) * x[t - tau, :, j]``,
    taps from ``tau = 0`` (offset 0: a zero delay is immediate). ``delays`` is
    ``"axonal"`` (one per input channel) or ``"synaptic"`` (one per weight,
    the DCLS-style feedforward delays of the DelRec ablations).
    """

    def __init__(self, in_features: int, out_features: int, delays: str = "synaptic",
                 bias: bool = True, delay_init=(0.0, 30.0), sigma: float = 10.0,
                 learn_width: bool = False, normalize_spread: bool = False):
        super().__init__()
        if delays not in DELAY_KINDS:
            raise ValueError(f"Feedforward delays must be 'axonal' or 'synaptic', not {delays!r}")
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        shape = (in_features,) if delays == "axonal" else (out_features, in_features)
        self.delays = Delays(shape, offset=0, init_range=delay_init, sigma=sigma,
                             learn_width=learn_width, normalize=normalize_spread)

    @property
    def weight(self):
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C]`` -> ``[T, B, N]``."""
        T, B, C = x.shape
        kernel = self.delays.kernel()  # [K+1, *shape], taps 0..K
        taps = kernel.shape[0]
        seq = F.pad(x.permute(1, 2, 0), (taps - 1, 0))  # [B, C, T + K], causal
        if kernel.dim() == 2:  # axonal: depthwise conv, then the weights
            delayed = F.conv1d(seq, kernel.flip(0).t().unsqueeze(1), groups=C)
            return self.linear(delayed.permute(2, 0, 1))
        weight = (kernel * self.linear.weight).permute(1, 2, 0).flip(-1)  # [N, C, K+1]
        out = F.conv1d(seq, weight, self.linear.bias)
        return out.permute(2, 0, 1)

    def schedule_length(self) -> int:
        return self.delays.schedule_length()

