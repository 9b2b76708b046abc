"""Triangular spread of real-valued delays, the core of DelRec.

A spike emitted at step ``t`` by a connection with real-valued delay ``d``
is not delivered at one step but spread over future steps ``t + tau`` with
weights

    h(tau) = max(0, (1 + sigma - |tau - (offset + d)|)) / (1 + sigma)**2

(Queant, Rançon, Cottereau, Masquelier, "DelRec: learning delays in recurrent
spiking neural networks", 2025). ``offset`` is 1 on recurrent connections (a
recurrent spike needs at least one step) and 0 on feedforward ones. The width
``1 + sigma`` shrinks every epoch; at evaluation the delay is rounded to an
integer and the kernel becomes a single one at ``tau = offset + round(d)``.

The continuous triangle has unit area for every ``d`` and ``sigma``; its
samples at integer ``tau`` sum to one exactly when ``1 + sigma`` is an integer
(in particular for ``sigma = 0``, plain linear interpolation) and the support
is not cut by causality. ``normalize=True`` rescales the sampled kernel to sum
to one in every case.

This module is the one place where taps, widths and integer delays are
defined; the recurrent and feedforward delay layers, the fixed-point
reference and the model compiler all call it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "sigma_schedule",
    "integer_delays",
    "spread_kernel",
    "schedule_length",
    "Delays",
]


def sigma_schedule(sigma0: float, epoch: int, epochs: int, decay: float = 0.95) -> float:
    """Spread parameter for ``epoch`` of ``epochs``: ``sigma0 * decay**(100*epoch/epochs)``.

    After ``epochs`` epochs the width has decayed as it would after 100 epochs
    of the paper's per-epoch factor 0.95, whatever the length of training.
    """
    if epochs <= 0:
        raise ValueError(f"Number of epochs must be positive, not {epochs!r}")
    if sigma0 < 0:
        raise ValueError(f"Initial sigma must be non-negative, not {sigma0!r}")
    return float(sigma0) * decay ** (100.0 * epoch / epochs)


def integer_delays(delays: torch.Tensor) -> torch.Tensor:
    """The integer delays used at inference and by the hardware.

    Rounds to the nearest integer (ties to even, as ``torch.round``) after
    clamping at zero. Returns a new tensor: the trained parameters are never
    modified.
    """
    return torch.round(delays.detach().clamp(min=0))


def schedule_length(max_delay: float, max_width: float, offset: int) -> int:
    """Number of future taps ``K`` a spike must be scheduled on.

    ``K`` is the largest integer ``tau`` with ``h(tau) > 0``, i.e. the largest
    integer strictly below ``offset + max_delay + max_width``. The buffer therefore
    grows and shrinks with the current largest delay; there is no preset
    maximum.
    """
    if max_delay < 0:
        raise ValueError(f"Delays must be non-negative, not {max_delay!r}")
    if max_width < 1:
        raise ValueError(f"Spread width 1 + sigma must be at least 1, not {max_width!r}")
    return max(int(math.ceil(offset + max_delay + max_width)) - 1, offset)


def spread_kernel(
    delays: torch.Tensor,
    width: torch.Tensor | float,
    taps: torch.Tensor,
    offset: int,
    normalize: bool = False,
) -> torch.Tensor:
    """Sample the spread of every delay at the integer ``taps``.

    Parameters
    ----------
    delays : Tensor ``[*D]``
        Real-valued delays, ``>= 0``.
    width : Tensor ``[*D]`` (or broadcastable) or float
        ``1 + sigma``, at least 1.
    taps : Tensor ``[K]``
        Integer steps ``tau`` after the spike.
    offset : int
        Intrinsic delay added to ``d`` (1 recurrent, 0 feedforward).
    normalize : bool
        Rescale so that the taps of every delay sum to one.

    Returns
    -------
    Tensor ``[K, *D]``
        ``h[k, ...] = max(0, width - |taps[k] - offset - d|) / width**2``.
    """
    width = torch.as_tensor(width, dtype=delays.dtype, device=delays.device)
    shape = (-1,) + (1,) * delays.dim()
    distance = (taps.to(delays.dtype).reshape(shape) - (offset + delays)).abs()
    h = torch.clamp(width - distance, min=0) / (width * width)
    if normalize:
        h = h / h.sum(dim=0, keepdim=True).clamp(min=torch.finfo(h.dtype).tiny)
    return h


class Delays(nn.Module):
    """Learnable real-valued delays with their DelRec spread.

    Parameters
    ----------
    shape : tuple of int
        ``(N,)`` for axonal delays (one per presynaptic neuron) or
        ``(N_post, N_pre)`` for synaptic delays.
    offset : int
        1 for recurrent connections, 0 for feedforward ones.
    init_range : (float, float)
        Delays start uniform in this range.
    sigma : float
        Initial spread parameter; the trainer lowers it every epoch.
    learn_width : bool
        Learn a per-neuron width ``1 + 2*sigma*sigmoid(p)`` (the last
        dimension of ``shape`` is the presynaptic neuron).
    normalize : bool
        See :func:`spread_kernel`.
    """

    def __init__(self, shape, offset: int, init_range=(0.0, 30.0), sigma: float = 10.0,
                 learn_width: bool = False, normalize: bool = False):
        super().__init__()
        low, high = (float(v) for v in init_range)
        if not 0 <= low <= high:
            raise ValueError(f"Delay initial range must satisfy 0 <= low <= high, not {init_range!r}")
        if offset not in (0, 1):
            raise ValueError(f"Delay offset must be 0 (feedforward) or 1 (recurrent), not {offset!r}")
        self.offset = offset
        self.normalize = normalize
        self.delay = nn.Parameter(torch.empty(shape).uniform_(low, high))
        self.width_logit = nn.Parameter(torch.zeros(shape[-1])) if learn_width else None
        self.sigma = 0.0
        self.set_sigma(sigma)

    def set_sigma(self, sigma: float) -> None:
        """Set the spread parameter (a Python float: exact in any dtype, saved in the state dict)."""
        if not sigma >= 0:
            raise ValueError(f"Sigma must be non-negative, not {sigma!r}")
        self.sigma = float(sigma)

    def get_extra_state(self):
        return {"sigma": self.sigma}

    def set_extra_state(self, state) -> None:
        self.set_sigma(state["sigma"])

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project the delays back onto ``d >= 0`` (called after each optimizer step)."""
        self.delay.clamp_(min=0)

    def width(self) -> torch.Tensor:
        """``1 + sigma`` (shape ``[]``) or the learned per-neuron width (``[N_pre]``)."""
        if self.width_logit is None:
            return torch.tensor(1 + self.sigma, dtype=self.delay.dtype, device=self.delay.device)
        return 1 + 2 * self.sigma * torch.sigmoid(self.width_logit.to(self.delay.dtype))

    def integer(self) -> torch.Tensor:
        """Integer delays used at evaluation and by the hardware (parameters untouched)."""
        return integer_delays(self.delay)

    def kernel(self) -> torch.Tensor:
        """Spread kernel over taps ``first..K``: ``[K - first + 1, *shape]``.

        In training mode the real delays and current width are used; in
        evaluation mode the rounded delays with width 1, so that every spike
        arrives at exactly ``offset + round(d)`` steps.
        """
        first = self.offset
        if self.training:
            delay = self.delay.clamp(min=0)
            width = self.width()
            if width.dim() == 1 and delay.dim() == 2:
                width = width.unsqueeze(0)
        else:
            delay = self.integer()
            width = torch.ones((), dtype=delay.dtype, device=delay.device)
        K = schedule_length(float(delay.detach().max()) if delay.numel() else 0.0,
                            float(width.detach().max()), self.offset)
        taps = torch.arange(first, K + 1, device=delay.device)
        return spread_kernel(delay, width, taps, self.offset,
                             normalize=self.normalize and self.training)

    def schedule_length(self) -> int:
        """The current number of future steps a spike is scheduled on."""
        return self.offset + self.kernel().shape[0] - 1

    def extra_repr(self) -> str:
        return (f"shape={tuple(self.delay.shape)}, offset={self.offset}, "
                f"sigma={self.sigma:.3g}, learn_width={self.width_logit is not None}")
