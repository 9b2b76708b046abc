"""Leaky integrate-and-fire neurons with surrogate gradients.

Discrete-time LIF as in the DelRec paper (decay not applied to the input):

    H[t] = (1 - 1/tau) * V[t-1] + I[t]          charge
    S[t] = Heaviside(H[t] - V_th)                spike (H == V_th fires)
    V[t] = H[t] * (1 - S[t])                     hard reset to 0
    V[t] = H[t] - V_th * S[t]                    soft reset

The Heaviside has a surrogate derivative in the backward pass: ATan(alpha)
``alpha/2 / (1 + (pi/2 * alpha * x)**2)`` or triangle(gamma)
``max(0, gamma - |x|) / gamma**2``. With ``detach_reset`` the reset term
carries no gradient.

Two implementations share these definitions:

* :func:`lif_step` -- one step with plain autograd, used by the generic
  (synaptic-delay) paths;
* :func:`lif_sequence` -- a whole sequence, optionally with axonal recurrent
  delays, with a hand-written backward pass over time. It is the fast path
  of every axonal DelRec layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from delrec.arith import RESET_MODES

__all__ = ["Surrogate", "ATan", "Triangle", "surrogate_from_name", "LIFParameters",
           "lif_step", "lif_sequence"]


class Surrogate:
    """A Heaviside with a smooth derivative in the backward pass."""

    name = "surrogate"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _SurrogateSpike.apply(x, self)


class _SurrogateSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


@dataclass(frozen=True)
class ATan(Surrogate):
    """Arctangent surrogate (Fang et al. 2021): ``d/dx = alpha/2 / (1 + (pi/2 alpha x)^2)``."""

    alpha: float = 5.0
    name = "atan"

    def __post_init__(self):
        if not self.alpha > 0:
            raise ValueError(f"ATan alpha must be positive, not {self.alpha!r}")

    def derivative(self, x):
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Triangle surrogate: ``d/dx = max(0, gamma - |x|) / gamma^2``."""

    gamma: float = 1.0
    name = "triangle"

    def __post_init__(self):
        if not self.gamma > 0:
            raise ValueError(f"Triangle gamma must be positive, not {self.gamma!r}")

    def derivative(self, x):
        return torch.clamp(self.gamma - x.abs(), min=0) / (self.gamma * self.gamma)


def surrogate_from_name(name: str, scale: float) -> Surrogate:
    """``"atan"`` with alpha = scale, or ``"triangle"`` with gamma = scale."""
    if name == "atan":
        return ATan(scale)
    if name == "triangle":
        return Triangle(scale)
    raise ValueError(f"Surrogate must be 'atan' or 'triangle', not {name!r}")


@dataclass(frozen=True)
class LIFParameters:
    """Constants of a LIF population.

    Parameters
    ----------
    tau : float
        Membrane time constant in steps, ``>= 1`` (decay ``1 - 1/tau``).
    threshold : float
        Firing threshold ``V_th > 0``.
    reset : {"hard", "soft"}
        Reset to zero, or subtract the threshold.
    detach_reset : bool
        Stop the gradient through the reset.
    surrogate : Surrogate
        Derivative used for the spike in the backward pass.
    """

    tau: float = 2.0
    threshold: float = 1.0
    reset: str = "hard"
    detach_reset: bool = False
    surrogate: Surrogate = field(default_factory=ATan)

    def __post_init__(self):
        if not self.tau >= 1:
            raise ValueError(f"Membrane time constant tau must be >= 1 step, not {self.tau!r}")
        if not self.threshold > 0:
            raise ValueError(f"Threshold must be positive, not {self.threshold!r}")
        if self.reset not in RESET_MODES:
            raise ValueError(f"Reset must be 'hard' or 'soft', not {self.reset!r}")

    @property
    def decay(self) -> float:
        return 1.0 - 1.0 / self.tau


def lif_step(v: torch.Tensor, current: torch.Tensor, p: LIFParameters):
    """One LIF step with autograd. Shapes ``[B, N]``; returns ``(spikes, v)``."""
    h = p.decay * v + current
    s = p.surrogate(h - p.threshold)
    s_reset = s.detach() if p.detach_reset else s
    if p.reset == "hard":
        v = h * (1 - s_reset)
    else:
        v = h - p.threshold * s_reset
    return s, v


def lif_sequence(current: torch.Tensor, p: LIFParameters, weight: torch.Tensor | None = None,
                 kernel: torch.Tensor | None = None, dropout_mask: torch.Tensor | None = None):
    """Run a LIF population over a whole sequence, with optional delayed recurrence.

    Parameters
    ----------
    current : Tensor ``[T, B, N]``
        Feedforward input current.
    p : LIFParameters
    weight : Tensor ``[N, N]`` or None
        Recurrent weights ``W[post, pre]``; None for no recurrence.
    kernel : Tensor ``[K, N]``
        Axonal spread of each presynaptic neuron over taps ``1..K`` (see
        :mod:`~delrec.golden.spread`); a spike of neuron ``j`` at ``t`` adds
        ``kernel[k-1, j]`` to its delayed trace at ``t + k``, which reaches the
        neurons through ``W``: ``I_rec[t] = W @ z[t]``.
    dropout_mask : Tensor ``[T, B, N]`` or None
        Multiplies the recurrent current (already scaled by ``1/(1-p)``).

    Returns
    -------
    Tensor ``[T, B, N]``
        Spikes.
    """
    if current.dim() != 3:
        raise ValueError(f"Input current must have shape [T, B, N], not {tuple(current.shape)}")
    if weight is None:
        return _LIFSequence.apply(current, p, None, None, None)
    N = current.shape[-1]
    if weight.shape != (N, N):
        raise ValueError(f"Recurrent weight must have shape {(N, N)}, not {tuple(weight.shape)}")
    if kernel is None or kernel.dim() != 2 or kernel.shape[1] != N:
        raise ValueError(f"Recurrent kernel must have shape [K, {N}], not "
                         f"{None if kernel is None else tuple(kernel.shape)}")
    if dropout_mask is not None and dropout_mask.shape != current.shape:
        raise ValueError(f"Dropout mask must have shape {tuple(current.shape)}, "
                         f"not {tuple(dropout_mask.shape)}")
    return _LIFSequence.apply(current, p, weight, kernel, dropout_mask)


class _LIFSequence(torch.autograd.Function):
    """Forward over time without autograd, hand-written backward through time.

    Because the delay belongs to the presynaptic neuron, the spread is applied
    to the spikes before the weight multiply, ``W @ (sum_k h_k * s[t-k])``:
    per step one ``[B, N] x [N, N]`` product and ``K * B * N`` multiply-adds.
    The future-oriented schedule ``z`` holds, for every future step, the
    spread spikes already scheduled to arrive then.
    """

    @staticmethod
    def forward(ctx, current, p, weight, kernel, mask):
        T, B, N = current.shape
        decay, vth = p.decay, p.threshold
        recurrent = weight is not None
        K = kernel.shape[0] if recurrent else 0
        charge = torch.empty_like(current)
        spikes = torch.empty_like(current)
        schedule = current.new_zeros(T + K + 1, B, N) if recurrent else None
        if recurrent:
            weight_t = weight.t()
            taps = kernel.unsqueeze(1)  # [K, 1, N]
        v = current.new_zeros(B, N)
        for t in range(T):
            if recurrent:
                if mask is None:
                    h = torch.addmm(current[t], schedule[t], weight_t)
                else:
                    h = torch.addcmul(current[t], mask[t], schedule[t] @ weight_t)
                h.add_(v, alpha=decay)
            else:
                h = current[t] + decay * v
            s = (h >= vth).to(h.dtype)
            charge[t] = h
            spikes[t] = s
            if p.reset == "hard":
                v = h * (1 - s)
            else:
                v = h - vth * s
            if recurrent:
                schedule[t + 1:t + 1 + K].addcmul_(taps, s.unsqueeze(0))
        ctx.p = p
        ctx.recurrent = recurrent
        ctx.save_for_backward(charge, spikes, weight, kernel, mask, schedule)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        charge, spikes, weight, kernel, mask, schedule = ctx.saved_tensors
        p = ctx.p
        T, B, N = charge.shape
        decay, vth = p.decay, p.threshold
        recurrent = ctx.recurrent
        K = kernel.shape[0] if recurrent else 0
        grad_current = torch.empty_like(charge)
        surrogate = p.surrogate.derivative(charge - vth)
        if recurrent:
            grad_schedule = charge.new_zeros(T + K + 1, B, N)
            taps = kernel.unsqueeze(1)
        grad_v = charge.new_zeros(B, N)
        for t in range(T - 1, -1, -1):
            g_s = grad_spikes[t]
            if recurrent:
                # s[t] reached the schedule at t+1..t+K
                g_s = g_s + (grad_schedule[t + 1:t + 1 + K] * taps).sum(0)
            if p.reset == "hard":
                g_h = grad_v * (1 - spikes[t])
                if not p.detach_reset:
                    g_s = g_s - grad_v * charge[t]
            else:
                g_h = grad_v
                if not p.detach_reset:
                    g_s = g_s - vth * grad_v
            g_h = g_h + g_s * surrogate[t]
            grad_current[t] = g_h
            grad_v = decay * g_h
            if recurrent:
                g_rec = g_h if mask is None else g_h * mask[t]
                torch.mm(g_rec, weight, out=grad_schedule[t])
        if not recurrent:
            return grad_current, None, None, None, None
        grad_rec = grad_current if mask is None else grad_current * mask
        grad_weight = grad_rec.reshape(-1, N).t() @ schedule[:T].reshape(-1, N)
        grad_kernel = torch.empty_like(kernel)
        flat_spikes = spikes.reshape(T * B, N)
        for k in range(1, K + 1):
            # dL/dh[k] = sum_t,b dL/dz[t+k] * s[t]
            grad_kernel[k - 1] = (grad_schedule[k:k + T].reshape(T * B, N) * flat_spikes).sum(0)
        return grad_current, None, grad_weight, grad_kernel, None
