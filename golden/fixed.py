"""The fixed-point golden model of the inference core, and the quantizer that feeds it.

:func:`run_fixed` runs a :class:`~delrec.image.FixedNetwork` on a batch of
input event counts ``[T, B, C]`` in exactly the order of operations of
:class:`delrec.arith.CoreSpec`, and returns every hidden spike, membrane,
readout value and score at every step (:class:`FixedTrace`): the values the
RTL core must reproduce bit for bit. Its steps are :func:`lif_step`,
:func:`readout_step` and the delayed reads of :func:`delayed`, which the
learning rule (:mod:`delrec.golden.online_fixed`) runs too: the two golden
models share one forward pass.

Integer exactness: states are ``torch.int64``. The weighted sums ``W @ s``
are computed as ``float64`` matrix products (BLAS) and converted back: every
partial sum is an integer far below ``2^53`` (the compiler bounds the sum by
``2^(acc_bits-1)``), so the float64 product is exact and the conversion
loses nothing. Saturation, leak and reset are integer operations.

:func:`quantize` maps a trained one-hidden-layer float network
(:class:`~delrec.golden.network.DelayNetwork`) to a ``FixedNetwork``:
per-layer scale ``s`` with ``s * max|W| = 2^(weight_bits-1) - 1`` (lowered
when the threshold, biases or the accumulator bound would not fit),
``w = round(s W)``, ``b = round(s b)``, ``theta = round(s V_th)``, batch
norm folded into the projection, delays rounded as at float evaluation
(:func:`~delrec.golden.spread.integer_delays`), leaks
``alpha = 1 - 1/tau`` as the nearest leak parameter. The readout gets its own
scale. The core decides by ``argmax_k sum_t V_k[t]``; the float recipe by
``argmax_k sum_t softmax(V[t])_k``: :func:`evaluate_quantized` reports both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from delrec.arith import CoreSpec, decay, readout_update, sat, signed_range
from delrec.image import FixedNetwork

__all__ = ["FixedTrace", "run_fixed", "quantize", "evaluate_quantized", "lif_step", "readout_step",
           "delayed", "exact_matmul"]


@dataclass
class FixedTrace:
    """Every state of the core at every step (numpy ``int64``).

    ``spikes [T, B, N]`` (0/1), ``h [T, B, N]`` (membrane before reset),
    ``v [T, B, N]`` (after reset), ``readout [T, B, K]`` (readout ``V``),
    ``scores [T, B, K]`` (running sums).
    """

    spikes: np.ndarray
    h: np.ndarray
    v: np.ndarray
    readout: np.ndarray
    scores: np.ndarray

    def predictions(self) -> np.ndarray:
        """Class per sample ``[B]``: the first index of the largest final score."""
        return self.scores[-1].argmax(-1)


# ---------------------------------------------------------------------------
# one step, shared by both golden models (this one and online_fixed)
# ---------------------------------------------------------------------------

def exact_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w.T`` of small integers, exact through float64 (see the module docs)."""
    return torch.round(x.to(torch.float64) @ w.to(torch.float64).t()).to(torch.int64)


def delayed(history: torch.Tensor, lags: torch.Tensor, t: int) -> torch.Tensor:
    """Presynaptic values ``lags`` steps before step ``t`` from a ring ``history [L, B, P]``.

    ``history[s mod L]`` holds step ``s``. ``lags [P]`` (one per presynaptic
    channel) gives ``[B, P]``; ``lags [N, P]`` (one per connection) gives
    ``[B, N, P]``. A lag beyond ``t`` (before the first step) reads 0;
    lags must stay below ``L``.
    """
    L, B, P = history.shape
    valid = lags <= t
    slot = torch.remainder(t - lags.clamp(max=t), L)
    ring = history.permute(1, 0, 2)          # [B, L, P]
    if lags.dim() == 1:
        out = ring.gather(1, slot.view(1, 1, P).expand(B, 1, P)).squeeze(1)
    else:
        out = ring.gather(1, slot.unsqueeze(0).expand(B, -1, -1))
    return torch.where(valid, out, torch.zeros_like(out))


def weighted(values: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sum_p w[i, p] values[.., p]`` per neuron: ``values [B, P]`` or per connection ``[B, N, P]``."""
    if values.dim() == 3:
        return (values * w).sum(-1)
    return exact_matmul(values, w)


def lif_step(v: torch.Tensor, current: torch.Tensor, bias: torch.Tensor, theta: int, leak: int,
             reset: str, spec: CoreSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`delrec.arith.neuron_update` on a layer ``[B, N]``: ``(h, spikes, v_next)``."""
    h = sat(decay(v, leak, spec.leak, spec.decay_bits) + current + bias, spec.v_bits)
    s = (h >= theta).to(torch.int64)
    v_next = h - theta * s if reset == "soft" else h * (1 - s)
    return h, s, v_next


def readout_step(value: torch.Tensor, current: torch.Tensor, bias: torch.Tensor, leak: int,
                 score: torch.Tensor, counts: bool, spec: CoreSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`delrec.arith.readout_update` on the readout ``[B, K]``: ``(V, score)``."""
    return readout_update(value, current, bias, leak, score, spec, counts)


def run_fixed(net: FixedNetwork, x) -> FixedTrace:
    """Run the integer network on input event counts.

    Parameters
    ----------
    net : FixedNetwork
    x : int array or tensor ``[T, B, C]``
        Events per channel per step (``>= 0``).

    Returns
    -------
    FixedTrace
    """
    spec = net.spec
    x = torch.as_tensor(np.asarray(x))
    if x.dim() != 3 or x.shape[-1] != net.inputs:
        raise ValueError(f"Input must have shape [T, B, {net.inputs}], not {tuple(x.shape)}")
    if x.dtype.is_floating_point:
        if not torch.equal(x, torch.round(x)):
            raise ValueError("Input event counts must be integers")
    x = x.to(torch.int64)
    if x.numel() and int(x.min()) < 0:
        raise ValueError(f"Input event counts must be >= 0, not {int(x.min())}")
    max_events = int(x.max()) if x.numel() else 0
    net.check_accumulators(max(1, max_events))

    T, B, _ = x.shape
    N, K = net.neurons, net.classes
    fwd = {k: (None if v is None else torch.from_numpy(np.asarray(v))) for k, v in net.forward().items()}
    recurrent = net.recurrent
    input_lags = fwd["input_delays"]
    # a ring longer than any lag (the longest is D, a recurrent delay of D - 1)
    history = spec.depth + 1
    inputs = torch.zeros(history, B, net.inputs, dtype=torch.int64)
    spikes = torch.zeros(history, B, N, dtype=torch.int64)
    v = torch.zeros(B, N, dtype=torch.int64)
    readout = torch.zeros(B, K, dtype=torch.int64)
    score = torch.zeros(B, K, dtype=torch.int64)
    out = {k: torch.empty(T, B, n, dtype=torch.int64)
           for k, n in (("spikes", N), ("h", N), ("v", N), ("readout", K), ("scores", K))}
    for t in range(T):
        inputs[t % history] = x[t]
        if input_lags is None:
            current = exact_matmul(x[t], fwd["w_in"])
        else:
            current = weighted(delayed(inputs, input_lags, t), fwd["w_in"])
        if recurrent:   # spike of step t - 1 - d; nothing before t = 0
            current = current + weighted(delayed(spikes, fwd["delays"] + 1, t), fwd["w_rec"])
        h, s, v = lif_step(v, current, fwd["bias"], net.theta, net.leak, net.reset, spec)
        spikes[t % history] = s
        readout, score = readout_step(readout, exact_matmul(s, fwd["w_out"]), fwd["bias_out"],
                                      net.readout_leak, score, t >= net.score_start, spec)
        for key, value in (("spikes", s), ("h", h), ("v", v), ("readout", readout), ("scores", score)):
            out[key][t] = value
    return FixedTrace(**{k: val.numpy() for k, val in out.items()})


# ---------------------------------------------------------------------------
# quantization
# ---------------------------------------------------------------------------

def _round(x: torch.Tensor) -> np.ndarray:
    """Round half away from zero (symmetric, as a quantizer usually does)."""
    x = x.detach().to(torch.float64)
    return (torch.sign(x) * torch.floor(x.abs() + 0.5)).to(torch.int64).numpy()


def _fold_batch_norm(weight: torch.Tensor, bias: torch.Tensor, norm: nn.Module):
    if isinstance(norm, nn.Identity):
        return weight, bias
    f64 = dict(dtype=torch.float64)
    scale = norm.weight.to(**f64) / torch.sqrt(norm.running_var.to(**f64) + norm.eps)
    return weight * scale[:, None], (bias - norm.running_mean.to(**f64)) * scale + norm.bias.to(**f64)


@torch.no_grad()
def quantize(model, spec: CoreSpec | None = None, max_input: int = 1) -> FixedNetwork:
    """A trained one-hidden-layer float network as the core's integer network.

    Parameters
    ----------
    model : DelayNetwork
        Kinds ``delrec``, ``delrec-synaptic``, ``recurrent`` or
        ``feedforward`` with one hidden layer (the core's topology).
    spec : CoreSpec
        Target widths (default: the core's defaults).
    max_input : int
        Largest event count of one channel in one step (bounds the current).

    Raises
    ------
    ValueError
        For a topology the core does not run, or a delay beyond ``D - 1``.
    """
    from .layers import RecurrentLIF
    from .readout import LeakyReadout

    spec = spec or CoreSpec()
    cfg = model.config
    if len(cfg.hidden) != 1:
        raise ValueError(f"The core runs one hidden layer; this network has {len(cfg.hidden)} "
                         f"({cfg.hidden}). Train with --hidden N")
    if cfg.kind == "ff-delays":
        raise ValueError("The core has no feedforward delays; 'ff-delays' networks cannot be "
                         "quantized for it (kinds: delrec, delrec-synaptic, recurrent, feedforward)")
    model = model.eval()
    proj = model.projections[0]
    weight = proj.weight.detach().to(torch.float64)
    b = proj.bias.detach().to(torch.float64) if proj.bias is not None else torch.zeros(weight.shape[0],
                                                                                       dtype=torch.float64)
    norm = model.norms[0]
    weight, b = _fold_batch_norm(weight, b, norm)
    neurons = model.neurons[0]
    N = weight.shape[0]
    if isinstance(neurons, RecurrentLIF):
        w_rec = neurons.weight.detach().to(torch.float64)
        if neurons.delays is None:
            delays = torch.zeros(N, dtype=torch.int64)
        else:
            delays = neurons.delays.integer().to(torch.int64)
            if neurons.delay_kind == "synaptic":
                delays = delays.reshape(N, N)
    else:
        w_rec = torch.zeros(N, N, dtype=torch.float64)
        delays = torch.zeros(N, dtype=torch.int64)
    if int(delays.max()) > spec.depth - 1:
        where = np.unravel_index(int(delays.argmax()), tuple(delays.shape))
        raise ValueError(f"Delay {int(delays.max())} of neuron {[int(i) for i in where]} exceeds the "
                         f"core's largest delay {spec.depth - 1} (D = {spec.depth}); "
                         f"use a core with more delay bits")
    params = cfg.lif()
    wmax = signed_range(spec.weight_bits)[1]
    vmax = signed_range(spec.v_bits)[1]
    acc = signed_range(spec.acc_bits)[1]
    largest = float(torch.cat([weight.abs().flatten(), w_rec.abs().flatten()]).max())
    fan = float((weight.abs().sum(1) * max_input + w_rec.abs().sum(1)).max())
    candidates = [wmax / max(largest, 1e-12), (vmax - 1) / params.threshold, acc / max(fan, 1e-12)]
    if b.abs().max() > 0:
        candidates.append(vmax / float(b.abs().max()))
    scale = min(candidates)
    theta = max(1, int(math.floor(params.threshold * scale + 0.5)))

    readout = model.readout
    w_out = readout.linear.weight.detach().to(torch.float64)
    b_out = (readout.linear.bias.detach().to(torch.float64) if readout.linear.bias is not None
             else torch.zeros(w_out.shape[0], dtype=torch.float64))
    rmax = signed_range(spec.readout_bits)[1]
    r_candidates = [wmax / max(float(w_out.abs().max()), 1e-12),
                    acc / max(float(w_out.abs().sum(1).max()), 1e-12)]
    if b_out.abs().max() > 0:
        r_candidates.append(rmax / float(b_out.abs().max()))
    r_scale = min(r_candidates)
    readout_alpha = readout.decay if isinstance(readout, LeakyReadout) else 0.0

    meta = dict(scale=scale, readout_scale=r_scale, tau=params.tau, threshold=params.threshold,
                readout_alpha=readout_alpha, kind=cfg.kind, max_input=max_input)
    wf, f = spec.weight_frac_bits, spec.delay_frac_bits   # a learning spec stores fractions: zero here
    return FixedNetwork(spec=spec, w_in=_round(weight * scale) << wf, w_rec=_round(w_rec * scale) << wf,
                        delays=delays.numpy() << f, bias=_round(b * scale) << wf,
                        w_out=_round(w_out * r_scale) << wf, bias_out=_round(b_out * r_scale) << wf,
                        theta=theta, leak=spec.leak_param(params.decay),
                        readout_leak=spec.leak_param(readout_alpha), reset=params.reset, meta=meta)


@torch.no_grad()
def evaluate_quantized(model, net: FixedNetwork, loader, progress: bool = False) -> dict:
    """Accuracy of the float model and of its integer network on ``loader``.

    ``float_accuracy`` uses the recipe's decision (``sum_t softmax``), with
    integer delays; ``fixed_accuracy`` the core's (``argmax sum_t V``);
    ``agreement`` is the fraction of samples where both predict the same.
    """
    from tqdm.auto import tqdm

    model = model.eval()
    correct_float = correct_fixed = agree = total = 0
    spikes = neuron_steps = 0
    for x, y in tqdm(loader, desc="quantized eval", disable=not progress, leave=False):
        float_pred = model.readout.scores(model(x)).argmax(-1).numpy()
        trace = run_fixed(net, x)
        fixed_pred = trace.predictions()
        y = y.numpy()
        correct_float += int((float_pred == y).sum())
        correct_fixed += int((fixed_pred == y).sum())
        agree += int((float_pred == fixed_pred).sum())
        total += len(y)
        spikes += int(trace.spikes.sum())
        neuron_steps += trace.spikes.size
    if total == 0:
        raise ValueError("Cannot evaluate on an empty split")
    return {"float_accuracy": correct_float / total, "fixed_accuracy": correct_fixed / total,
            "agreement": agree / total, "samples": total,
            "fixed_spikes_per_neuron_per_step": spikes / max(1, neuron_steps)}
