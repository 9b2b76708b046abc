r"""Online three-factor learning of delays and weights (float reference).

The second method of this project: delays (synaptic or axonal) and weights
of a LIF layer are learned forward in time, with no backpropagation through
time, from eligibility traces times a top-down learning signal. Because every
quantity is a running sum, the same rule runs in the chip's delay-update unit
(its bit-exact fixed-point form is :mod:`delrec.golden.online_fixed`).

Network
-------
``input x [T, B, C] -> LIF layer of N neurons (optionally recurrent) ->
non-spiking readout of K units``. Neuron ``i`` receives

.. math::

    I_i[t] = \sum_j w_{ij}\,\tilde x_j(t - d_{ij})
           + \sum_j r_{ij}\,\tilde s_j(t - 1 - e_{ij}) + b_i

where ``d`` are the input delays (one per synapse, one per input channel
"axonal", or none) and ``e`` the recurrent delays (same kinds; a recurrent
spike needs at least one step). A presynaptic train is read at a real delay
``d`` through a kernel over its past: ``x~_j(t - d) = sum_m k(m - d) x_j[t-m]``
over lags ``m >= 0``. Two forward modes:

* ``forward="hard"`` -- ``k`` is a unit impulse at ``m = floor(d + 1/2)``: the spike
  arrives that many steps later (ties round up), exactly as on the chip;
* ``forward="smooth"`` -- ``k = G``, a normalised Gaussian of width
  ``sigma`` cut at ``|m - d| <= radius * sigma``; the network is then
  differentiable in ``d`` and the rule below is its exact gradient (tested).

The LIF neurons are those of :mod:`delrec.golden.lif` (charge
``H = alpha V + I`` with ``alpha = 1 - 1/tau``, spike ``S = H >= theta``,
reset soft ``V = H - theta S`` or hard ``V = H (1 - S)``, reset detached).
The readout integrates ``u_k[t] = beta u_k[t-1] + sum_i W_ki s_i[t] + c_k``;
its output ``y[t]`` is ``softmax(u[t])`` (``loss="ce"``, per-step
cross-entropy) or ``u[t]`` itself (``loss="mse"``, per-step squared error to
a one-hot target, the form the chip computes without an exponential). The
loss counts from step ``loss_start`` on. Prediction: the class with the
largest ``sum_t y[t]`` over those steps.

The rule
--------
With ``psi_i[t]`` the surrogate derivative of neuron ``i``'s spike with
respect to its charge at step ``t``, per synapse:

* weight trace ``eps_w_ij[t] = a_i[t] eps_w_ij[t-1] + x~_j(t - d_ij)``;
* delay trace ``eps_d_ij[t] = a_i[t] eps_d_ij[t-1] - w_ij x~'_j(t - d_ij)``,
  where ``x~'`` is the **Gaussian surrogate** of the time derivative of the
  presynaptic train, ``x~'_j(t - d) = sum_m G'(m - d) x_j[t - m]`` (one
  Gaussian-derivative kernel per past spike). In the hard forward mode this
  surrogate is used only here; in the smooth mode it is the true derivative.
* the trace decay ``a_i[t]`` is ``alpha`` for a soft reset and
  ``alpha (1 - s_i[t-1])`` for a hard one (the hard reset zeroes the charge's
  memory, and with it the memory of its derivative); with
  ``gate_traces=False`` a hard reset leaves the traces alone (``a = alpha``),
  an approximation that keeps one trace per presynaptic neuron, as the chip
  does (at DelRec's ``tau = 1.05``, ``alpha = 0.05``, the gate changes a
  trace by at most 5 % of its previous value);
* eligibility ``e_ij[t] = psi_i[t] eps_ij[t]``; learning signal (third
  factor) ``L_i[t] = sum_k B_ik (y_k[t] - y*_k[t])`` with ``B`` the readout
  weights transposed (``feedback="symmetric"``) or fixed random
  (``feedback="random"``);
* updates ``dw_ij = -eta_w sum_t L_i[t] e_w_ij[t]``,
  ``dd_ij = -eta_d sum_t L_i[t] e_d_ij[t]``; the readout learns from
  ``dW_ki = -eta_out sum_t (y_k - y*_k)[t] zbar_i[t]`` with ``zbar = beta
  zbar + s`` (exact for the readout). Accumulated over ``update_every``
  steps (0: the whole sample), averaged over the batch, then applied; delays
  are kept in ``[0, max_delay]``.

**Derivation.** ``eps_ij[t]`` is ``dH_i[t]/dtheta_ij`` of the charge: the
recursion ``H[t] = a[t] H[t-1] + I[t]`` (reset detached) differentiates to
``dH[t] = a[t] dH[t-1] + dI[t]``, and ``dI_i/dw_ij = x~_j``,
``dI_i/dd_ij = w_ij d/dd x~_j(t - d) = -w_ij x~'_j``. The spike adds
``psi``; with ``beta = 0`` the loss at ``t`` depends on ``s_i[t]`` only through
``u[t]``, so ``dE/ds_i[t] = sum_k W_ki (y_k - y*_k)[t] = L_i[t]`` (symmetric
feedback) and ``dE/dtheta = sum_t L_i[t] psi_i[t] eps[t]`` exactly, for one
feedforward layer. Approximations, stated plainly: with ``beta > 0`` the
readout's memory of earlier steps is ignored (e-prop's rule without its
filtered eligibility); with recurrence, the dependence of the recurrent
input spikes on earlier parameters is ignored (the usual truncation: the
recurrent spikes are treated as inputs), so the rule equals autograd with
the recurrent spikes detached; with random feedback it follows feedback
alignment instead of the gradient.

**Axonal delays** (``d_ij = d_j``) factor: with a soft reset the decay
``a`` is the same for every target, so ``eps_d_ij = -w_ij q_j`` with one
trace per presynaptic neuron ``q_j[t] = alpha q_j[t-1] + x~'_j(t - d_j)``,
and ``dd_j = eta_d sum_t q_j[t] sum_i w_ij L_i[t] psi_i[t]`` -- the
back-projected signal ``sum_i w_ij L_i psi_i`` is a matrix-vector product the
chip already has the weights for. Likewise the weight trace of an input
without delay or with an axonal delay is one per presynaptic neuron.

Memory of the learning state (per sample, ``P`` presynaptic, ``N``
postsynaptic neurons; see :func:`trace_memory`):

=========================  ==========================  ==================
learned                    soft reset                   hard reset
=========================  ==========================  ==================
weights, no/axonal delays  ``P`` weight traces          ``N P``
weights, synaptic delays   ``N P``                      ``N P``
axonal delays              ``P`` delay traces           ``N P``
synaptic delays            ``N P``                      ``N P``
=========================  ==========================  ==================

plus, with a per-step signal, one accumulator per learned parameter when
updates are deferred (``update_every != 1``; per presynaptic neuron for
axonal delays), or, with a per-sample signal, one eligibility sum per
synapse for every learned weight and delay; and ``N`` readout traces. So
axonal delays with a soft reset and a per-step signal learn with state that
grows with the neurons, not with the synapses (``2 P`` values for ``P``
delays); the per-sample signal trades that for a better objective.

References: Bellec et al., "A solution to the learning dilemma for recurrent
networks of spiking neurons" (e-prop), Nat. Commun. 2020; the three-factor
delay rules of the seed paper in ``shared/seeds``; Queant et al., DelRec, 2025.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from delrec import arith

from .lif import surrogate_from_name

__all__ = ["OnlineConfig", "OnlineNetwork", "gaussian", "gaussian_delay_derivative",
           "trace_memory", "per_synapse_traces"]

#: The delays of a layer: a kind of :data:`delrec.arith.DELAY_KINDS`, or None (no delays).
DELAY_KINDS = (*arith.DELAY_KINDS, None)


def gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Normalised Gaussian ``exp(-x^2 / 2 sigma^2) / (sqrt(2 pi) sigma)``."""
    return torch.exp(-0.5 * (x / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)


def gaussian_delay_derivative(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``d/dd G(m - d) = -G'(x) = x / sigma^2 G(x)`` at ``x = m - d`` (lag minus delay)."""
    return x / (sigma * sigma) * gaussian(x, sigma)


@dataclass
class OnlineConfig:
    """A network trained by the three-factor rule, and the rule's settings.

    Parameters
    ----------
    inputs, hidden, classes : int
        ``C`` input channels, ``N`` LIF neurons, ``K`` readout units.
    input_delays, recurrent_delays : {"synaptic", "axonal", None}
        Learnable delays on the input and on the recurrent connections.
    recurrent : bool
        Recurrent connections (one step plus their delay).
    max_delay : int
        Delays live in ``[0, max_delay]`` (the chip's ``D - 1``).
    delay_init : (float, float)
        Initial delays uniform in this range.
    forward : {"hard", "smooth"}
        Integer delays (as on chip) or a Gaussian read-out of real delays.
    sigma, radius : float
        Width of the Gaussian surrogate (steps) and its cut-off in widths.
    tau, threshold, reset, surrogate, surrogate_scale
        LIF neurons as in :class:`~delrec.golden.lif.LIFParameters`.
    readout_decay : float
        ``beta`` of the readout integrator, in ``[0, 1)``.
    loss : {"ce", "mse"}
    loss_start : int
        First step that counts in the loss (and in the prediction).
    signal : {"step", "sample"}
        A learning signal every step from the per-step loss, or one at the end
        of the sample from the loss of the summed readout ``sum_t u[t]`` (the
        BPTT models' objective); the latter keeps one eligibility sum per
        synapse during the sample.
    feedback : {"symmetric", "random"}
    learn_weights, learn_delays : bool
    gate_traces : bool
        With a hard reset, a spike zeroes the traces of its neuron's synapses
        (exact; one trace per synapse). False: one trace per presynaptic
        neuron that the reset does not touch (approximate; the chip's state).
    readout_bias : bool
        Learn a readout bias (with a per-sample signal its gradient is
        ``steps`` times the error, which plain SGD may not want).
    update_every : int
        Apply the accumulated updates every this many steps; 0 at the end of
        each sample.
    lr_weight, lr_delay, lr_readout : float
        Learning rates ``eta_w``, ``eta_d``, ``eta_out``.
    input_gain, recurrent_gain, readout_gain : float
        Scale of the uniform weight initialisation (``gain / sqrt(fan_in)``).
    """

    inputs: int = 32
    hidden: int = 64
    classes: int = 4
    input_delays: str | None = "synaptic"
    recurrent: bool = False
    recurrent_delays: str | None = None
    max_delay: int = 63
    delay_init: tuple = (0.0, 30.0)
    forward: str = "hard"
    sigma: float = 1.0
    radius: float = 3.0
    tau: float = 2.0
    threshold: float = 1.0
    reset: str = "soft"
    surrogate: str = "triangle"
    surrogate_scale: float = 1.0
    readout_decay: float = 0.0
    loss: str = "ce"
    loss_start: int = 0
    signal: str = "step"
    feedback: str = "symmetric"
    learn_weights: bool = True
    learn_delays: bool = True
    gate_traces: bool = True
    readout_bias: bool = True
    update_every: int = 0
    lr_weight: float = 1e-3
    lr_delay: float = 1e-1
    lr_readout: float = 1e-3
    input_gain: float = 3.0
    recurrent_gain: float = 1.0
    readout_gain: float = 1.0

    def __post_init__(self):
        for name in ("inputs", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, not {getattr(self, name)!r}")
        if self.classes < 2:
            raise ValueError(f"Need at least 2 classes, not {self.classes!r}")
        for name in ("input_delays", "recurrent_delays"):
            if getattr(self, name) not in DELAY_KINDS:
                raise ValueError(f"{name} must be one of {DELAY_KINDS}, not {getattr(self, name)!r}")
        if self.recurrent_delays is not None and not self.recurrent:
            raise ValueError("Recurrent delays need recurrent=True")
        if self.max_delay < 0:
            raise ValueError(f"Maximum delay must be non-negative, not {self.max_delay!r}")
        lo, hi = self.delay_init
        if not 0 <= lo <= hi <= self.max_delay:
            raise ValueError(f"Initial delay range must lie in [0, {self.max_delay}], "
                             f"not {list(self.delay_init)!r}")
        if self.forward not in ("hard", "smooth"):
            raise ValueError(f"Forward mode must be 'hard' or 'smooth', not {self.forward!r}")
        if not (self.sigma > 0 and self.radius > 0):
            raise ValueError(f"Gaussian width and radius must be positive, not "
                             f"sigma={self.sigma!r}, radius={self.radius!r}")
        if not self.tau >= 1:
            raise ValueError(f"Membrane time constant tau must be >= 1 step, not {self.tau!r}")
        if self.reset not in arith.RESET_MODES:
            raise ValueError(f"Reset must be 'soft' or 'hard', not {self.reset!r}")
        if not 0 <= self.readout_decay < 1:
            raise ValueError(f"Readout decay must be in [0, 1), not {self.readout_decay!r}")
        if self.loss not in ("ce", "mse"):
            raise ValueError(f"Loss must be 'ce' or 'mse', not {self.loss!r}")
        if self.signal not in ("step", "sample"):
            raise ValueError(f"Learning signal must be 'step' or 'sample', not {self.signal!r}")
        if self.signal == "sample" and (self.update_every or self.readout_decay):
            raise ValueError("A per-sample learning signal needs update_every=0 and readout_decay=0, "
                             f"not {self.update_every!r} and {self.readout_decay!r}")
        if self.feedback not in ("symmetric", "random"):
            raise ValueError(f"Feedback must be 'symmetric' or 'random', not {self.feedback!r}")
        if self.update_every < 0 or self.loss_start < 0:
            raise ValueError(f"update_every and loss_start must be non-negative, not "
                             f"{self.update_every!r}, {self.loss_start!r}")
        self.delay_init = tuple(float(v) for v in self.delay_init)

    @property
    def decay(self) -> float:
        return 1.0 - 1.0 / self.tau

    def to_dict(self) -> dict:
        d = asdict(self)
        d["delay_init"] = list(self.delay_init)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "OnlineConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown online-learning settings {sorted(unknown)}")
        return cls(**data)


def trace_memory(config: OnlineConfig) -> dict:
    """Numbers of learning-state values per sample, by kind (see the module's table).

    Traces: per presynaptic neuron when the delay is axonal or absent and the
    reset soft, else per synapse. With a per-step signal, deferred updates
    (``update_every != 1``) need one accumulator per learned parameter (per
    presynaptic neuron for axonal delays). With a per-sample signal, the
    eligibility sums replace the accumulators but are per synapse for every
    learned weight and delay (``sum_t psi_i[t] q_j[t]`` does not factor).
    """
    N, C = config.hidden, config.inputs
    out = {}

    def add(name, pre, kind, learn_w, learn_d):
        per_synapse = per_synapse_traces(config, kind)
        learn_d = learn_d and kind is not None
        if learn_w:
            out[f"{name}_weight_traces"] = N * pre if per_synapse else pre
        if learn_d:
            out[f"{name}_delay_traces"] = N * pre if per_synapse else pre
        if config.signal == "sample":
            if learn_w:
                out[f"{name}_weight_eligibility_sums"] = N * pre
            if learn_d:
                out[f"{name}_delay_eligibility_sums"] = N * pre
        elif config.update_every != 1:
            if learn_w:
                out[f"{name}_weight_accumulators"] = N * pre
            if learn_d:
                out[f"{name}_delay_accumulators"] = N * pre if kind == "synaptic" else pre

    add("input", C, config.input_delays, config.learn_weights, config.learn_delays)
    if config.recurrent:
        add("recurrent", N, config.recurrent_delays, config.learn_weights, config.learn_delays)
    out["readout_traces"] = N
    out["total"] = sum(out.values())
    out["delay_state"] = sum(v for k, v in out.items() if "_delay_" in k)
    return out


def per_synapse_traces(config: OnlineConfig, kind) -> bool:
    """Whether a projection with delays of ``kind`` keeps its traces per synapse.

    Synaptic delays, or a hard reset that gates the traces; otherwise one
    trace per presynaptic neuron (the factored form).
    """
    return kind == "synaptic" or (config.reset == "hard" and config.gate_traces)


def accumulate_eligibility(config: OnlineConfig, el: dict, traces: dict, psi, spikes) -> None:
    """Per-sample signal: add this step's eligibilities ``psi_i eps`` to their sums in ``el``.

    Shared by the float rule and its fixed-point twin (integer tensors add exactly).
    Per-presynaptic traces ``[B, P]`` become per-synapse sums ``[B, N, P]``.
    """
    def add(key, value):
        el[key] = value if key not in el else el[key] + value

    for name in ("in", "rec"):
        tw, td = traces.get(f"w_{name}"), traces.get(f"d_{name}")
        if config.learn_weights and tw is not None:
            add(f"w_{name}", psi.unsqueeze(-1) * (tw if tw.dim() == 3 else tw.unsqueeze(1)))
        if config.learn_delays and td is not None:
            add(f"d_{name}", psi.unsqueeze(-1) * (td if td.dim() == 3 else td.unsqueeze(1)))
    if config.learn_weights:
        add("bias", psi * traces["bias"])
    add("spikes", spikes)


class OnlineNetwork(nn.Module):
    """One LIF layer with learnable delays and a readout, trained online.

    Shapes are time-major: inputs ``[T, B, C]``. :meth:`run` goes through a
    batch step by step, returns the readout outputs ``[T, B, K]`` and, with
    ``learn=True``, applies the three-factor updates; :meth:`gradients`
    returns the accumulated updates of one batch without applying them.
    """

    def __init__(self, config: OnlineConfig, seed: int = 0):
        super().__init__()
        self.config = c = config
        g = torch.Generator().manual_seed(seed)

        def uniform(shape, bound):
            return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound

        def delays(kind, pre):
            if kind is None:
                return None
            shape = (c.hidden, pre) if kind == "synaptic" else (pre,)
            lo, hi = c.delay_init
            return nn.Parameter(lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64))

        self.w_in = nn.Parameter(uniform((c.hidden, c.inputs), c.input_gain / math.sqrt(c.inputs)))
        self.d_in = delays(c.input_delays, c.inputs)
        self.bias = nn.Parameter(torch.zeros(c.hidden, dtype=torch.float64))
        if c.recurrent:
            self.w_rec = nn.Parameter(uniform((c.hidden, c.hidden),
                                              c.recurrent_gain / math.sqrt(c.hidden)))
            self.d_rec = delays(c.recurrent_delays, c.hidden)
        else:
            self.w_rec, self.d_rec = None, None
        self.w_out = nn.Parameter(uniform((c.classes, c.hidden), c.readout_gain / math.sqrt(c.hidden)))
        self.b_out = nn.Parameter(torch.zeros(c.classes, dtype=torch.float64))
        self.register_buffer("feedback", uniform((c.hidden, c.classes), 1.0 / math.sqrt(c.classes)))
        self.surrogate = surrogate_from_name(c.surrogate, c.surrogate_scale)
        self.requires_grad_(False)

    # -- delayed reads -------------------------------------------------------------
    @property
    def history(self) -> int:
        """Steps of presynaptic history kept: every lag a kernel can reach, plus one."""
        reach = self.config.max_delay + 1
        if self.config.forward == "smooth" or self.config.learn_delays:
            reach += int(math.ceil(self.config.radius * self.config.sigma)) + 1
        return reach + 1

    def _window(self, delays, offset: int, t: int):
        """Lags ``m`` (per entry of ``delays``) of the Gaussian window, with ``x = m - offset - d``."""
        c = self.config
        reach = int(math.ceil(c.radius * c.sigma))
        base = torch.floor(delays)
        for r in range(-reach, reach + 2):
            x = base + r - delays
            m = (base + r).long() + offset
            valid = (x.abs() <= c.radius * c.sigma) & (m >= offset) & (m <= t) & (m < self.history)
            yield m, x, valid

    def _read(self, hist, delays, kind, offset: int, t: int, kernel):
        """``sum_m kernel(x) hist[lag m]`` per synapse ``[B, N, P]`` or per neuron ``[B, P]``.

        ``hist`` is a ring ``[L, B, P]`` where lag ``m`` sits at ``(t - m) % L``;
        ``kernel`` None reads one lag ``offset + round(d)`` (the hard forward).
        """
        L, B, P = hist.shape
        ring = hist.permute(1, 0, 2)  # [B, L, P]

        def gather(lags):
            pos = torch.remainder(t - lags, L)
            if kind == "synaptic":
                return ring.gather(1, pos.unsqueeze(0).expand(B, -1, -1))
            return ring.gather(1, pos.view(1, 1, P).expand(B, 1, P)).squeeze(1)

        if kernel is None:
            lags = torch.floor(delays + 0.5).long() + offset
            out = gather(lags.clamp(max=t))
            return torch.where(lags <= t, out, torch.zeros_like(out))
        total = None
        for m, x, valid in self._window(delays, offset, t):
            w = torch.where(valid, kernel(x, self.config.sigma), torch.zeros_like(x))
            term = w * gather(m.clamp(min=0, max=self.history - 1))
            total = term if total is None else total + term
        return total

    def _presynaptic(self, hist, delays, kind, offset, t, need_derivative):
        """Delayed train ``x~`` and, when needed, its delay derivative term."""
        c = self.config
        if kind is None:
            value = hist[(t - offset) % hist.shape[0]] if t >= offset else torch.zeros_like(hist[0])
            return value, None
        kernel = gaussian if c.forward == "smooth" else None
        value = self._read(hist, delays, kind, offset, t, kernel)
        deriv = self._read(hist, delays, kind, offset, t, gaussian_delay_derivative) \
            if need_derivative else None
        return value, deriv

    # -- one batch -----------------------------------------------------------------
    def run(self, x: torch.Tensor, labels: torch.Tensor | None = None, learn: bool = False,
            record: bool = False):
        """Run a batch ``x [T, B, C]``; learn from ``labels [B]`` if ``learn``.

        Returns a dict with ``outputs [T, B, K]`` (``y``), ``scores [B, K]``
        (``sum_t y`` from ``loss_start``), ``loss`` (mean per sample) and, with
        ``record``, ``spikes [T, B, N]`` and ``membrane [T, B, N]``.
        """
        c = self.config
        if x.dim() != 3 or x.shape[2] != c.inputs:
            raise ValueError(f"Input must have shape [T, B, {c.inputs}], not {tuple(x.shape)}")
        if learn and labels is None:
            raise ValueError("Learning needs labels")
        x = x.to(torch.float64)
        T, B, _ = x.shape
        N, K = c.hidden, c.classes
        L = self.history
        dt = torch.float64
        hist_in = torch.zeros(L, B, c.inputs, dtype=dt)
        hist_rec = torch.zeros(L, B, N, dtype=dt) if c.recurrent else None
        v = torch.zeros(B, N, dtype=dt)
        s_prev = torch.zeros(B, N, dtype=dt)
        u = torch.zeros(B, K, dtype=dt)
        zbar = torch.zeros(B, N, dtype=dt)
        onebar = torch.zeros(B, 1, dtype=dt)
        target = F.one_hot(labels, K).to(dt) if labels is not None else None
        acc = self._zero_accumulators() if learn else None
        per_sample = c.signal == "sample"
        eligibility = {}
        traces = {}
        outputs, spikes_rec, mem_rec = [], [], []
        loss = torch.zeros((), dtype=dt)
        for t in range(T):
            hist_in[t % L] = x[t]
            if c.recurrent:
                hist_rec[t % L] = 0  # becomes s[t] below; lag 0 never read by recurrence
            gated = c.reset == "hard" and c.gate_traces
            a = c.decay * (1 - s_prev) if gated else c.decay
            current = self.bias.expand(B, N).clone()
            streams = [("in", hist_in, self.w_in, self.d_in, c.input_delays, 0)]
            if c.recurrent:
                streams.append(("rec", hist_rec, self.w_rec, self.d_rec, c.recurrent_delays, 1))
            for name, hist, w, d, kind, offset in streams:
                need_d = learn and c.learn_delays and kind is not None
                pre, deriv = self._presynaptic(hist, d, kind, offset, t, need_d)
                if kind == "synaptic":
                    current = current + (w * pre).sum(-1)
                else:
                    current = current + pre @ w.T
                if learn:
                    self._update_traces(traces, name, kind, a, pre, deriv, w)
            h = c.decay * v + current
            s = (h >= c.threshold).to(dt)
            psi = self.surrogate.derivative(h - c.threshold)
            v = h * (1 - s) if c.reset == "hard" else h - c.threshold * s
            if c.recurrent:
                hist_rec[t % L] = s
            u = c.readout_decay * u + s @ self.w_out.T + self.b_out
            y = F.softmax(u, dim=-1) if c.loss == "ce" and not per_sample else u
            outputs.append(y)
            if record:
                spikes_rec.append(s)
                mem_rec.append(h)
            if target is not None and t >= c.loss_start and not per_sample:
                if c.loss == "ce":
                    loss = loss + F.cross_entropy(u, labels, reduction="sum")
                else:
                    loss = loss + 0.5 * ((u - target) ** 2).sum()
            if learn and per_sample:
                if t >= c.loss_start:
                    self._accumulate_eligibility(eligibility, traces, psi, s)
            elif learn:
                err = (y - target) if t >= c.loss_start else torch.zeros_like(y)
                zbar = c.readout_decay * zbar + s
                onebar = c.readout_decay * onebar + 1
                B_fb = self.w_out.T if c.feedback == "symmetric" else self.feedback
                signal = (err @ B_fb.T) * psi  # L_i psi_i, [B, N]
                self._accumulate(acc, traces, signal, err, zbar, onebar)
                if c.update_every and (t + 1) % c.update_every == 0:
                    self._apply(acc, B)
                    acc = self._zero_accumulators()
            s_prev = s
        outputs = torch.stack(outputs)
        scores = outputs[c.loss_start:].sum(0)
        if per_sample and target is not None:
            if c.loss == "ce":
                loss = F.cross_entropy(scores, labels, reduction="sum")
                err = F.softmax(scores, dim=-1) - target
            else:
                loss = 0.5 * ((scores - target) ** 2).sum()
                err = scores - target
            if learn:
                self._sample_updates(acc, eligibility, err, T - min(c.loss_start, T))
        if learn and not (c.update_every and T % c.update_every == 0):
            self._apply(acc, B)
        result = {"outputs": outputs, "scores": scores, "loss": loss / B}
        if record:
            result["spikes"] = torch.stack(spikes_rec)
            result["membrane"] = torch.stack(mem_rec)
        return result

    def gradients(self, x: torch.Tensor, labels: torch.Tensor) -> dict:
        """The summed online updates of one batch (``-dE/dtheta`` estimates times B), not applied.

        Returns ``{parameter name: accumulated sum_b sum_t L e}``, the
        quantity the rule multiplies by ``-eta / B``; with ``beta = 0``, one
        feedforward layer and symmetric feedback it equals the batch-summed
        gradient of the loss (tested against autograd).
        """
        saved = self.config.update_every
        captured = {}
        self._capture = captured
        try:
            self.config.update_every = 0
            self.run(x, labels, learn=True)
        finally:
            self.config.update_every = saved
            del self._capture
        return captured

    # -- rule internals ------------------------------------------------------------
    def _learned(self):
        c = self.config
        names = []
        if c.learn_weights:
            names += ["w_in", "bias"] + (["w_rec"] if c.recurrent else [])
        if c.learn_delays:
            names += [n for n in ("d_in", "d_rec") if getattr(self, n) is not None]
        return names + ["w_out"] + (["b_out"] if self.config.readout_bias else [])

    def _zero_accumulators(self):
        return {n: torch.zeros_like(getattr(self, n)) for n in self._learned()}

    def _update_traces(self, traces, name, kind, a, pre, deriv, w):
        """Advance the weight and delay traces of one projection by one step."""
        c = self.config
        per_synapse = per_synapse_traces(c, kind)
        decay = a.unsqueeze(-1) if torch.is_tensor(a) else a
        if c.learn_weights:
            value = pre if (kind == "synaptic" or not per_synapse) else \
                pre.unsqueeze(1).expand(-1, c.hidden, -1)
            old = traces.get(f"w_{name}")
            traces[f"w_{name}"] = value if old is None else decay * old + value
        if deriv is not None:
            if kind == "synaptic":
                value = w * deriv
            elif per_synapse:  # axonal delays with a hard reset: per synapse, w inside
                value = w * deriv.unsqueeze(1)
            else:  # axonal, soft reset: one trace per presynaptic neuron, w applied later
                value = deriv
            old = traces.get(f"d_{name}")
            traces[f"d_{name}"] = value if old is None else decay * old + value
        if c.learn_weights and name == "in":
            old = traces.get("bias")
            one = torch.ones_like(a) if torch.is_tensor(a) else 1.0
            traces["bias"] = one if old is None else a * old + one

    def _accumulate(self, acc, traces, signal, err, zbar, onebar):
        c = self.config
        for name, w, d, kind in (("in", self.w_in, self.d_in, c.input_delays),
                                 ("rec", self.w_rec, self.d_rec, c.recurrent_delays)):
            if name == "rec" and not c.recurrent:
                continue
            tw, td = traces.get(f"w_{name}"), traces.get(f"d_{name}")
            if c.learn_weights and tw is not None:
                if tw.dim() == 3:
                    acc[f"w_{name}"] += torch.einsum("bi,bij->ij", signal, tw)
                else:
                    acc[f"w_{name}"] += signal.T @ tw
            if c.learn_delays and td is not None:
                if kind == "synaptic":
                    acc[f"d_{name}"] += torch.einsum("bi,bij->ij", signal, td)
                elif td.dim() == 3:  # axonal, per-synapse trace
                    acc[f"d_{name}"] += torch.einsum("bi,bij->j", signal, td)
                else:  # axonal, factored: q_j times the back-projected signal
                    acc[f"d_{name}"] += ((signal @ w) * td).sum(0)
        if c.learn_weights:
            tb = traces["bias"]
            acc["bias"] += (signal * tb).sum(0)
        acc["w_out"] += err.T @ zbar
        if "b_out" in acc:
            acc["b_out"] += (err * onebar).sum(0)

    def _accumulate_eligibility(self, el, traces, psi, s):
        accumulate_eligibility(self.config, el, traces, psi, s)

    def _sample_updates(self, acc, el, err, steps: int):
        """Per-sample signal: ``L_i = sum_k B_ik err_k`` times the summed eligibilities."""
        c = self.config
        B_fb = self.w_out.T if c.feedback == "symmetric" else self.feedback
        signal = err @ B_fb.T  # [B, N]
        for name, w, kind in (("in", self.w_in, c.input_delays), ("rec", self.w_rec, c.recurrent_delays)):
            if f"w_{name}" in el:
                acc[f"w_{name}"] += torch.einsum("bi,bij->ij", signal, el[f"w_{name}"])
            if f"d_{name}" in el:
                if kind == "synaptic":
                    acc[f"d_{name}"] += torch.einsum("bi,bij->ij", signal, el[f"d_{name}"])
                elif per_synapse_traces(c, kind):  # per-synapse trace with w inside
                    acc[f"d_{name}"] += torch.einsum("bi,bij->j", signal, el[f"d_{name}"])
                else:
                    acc[f"d_{name}"] += torch.einsum("bi,ij,bij->j", signal, w, el[f"d_{name}"])
        if "bias" in el:
            acc["bias"] += (signal * el["bias"]).sum(0)
        if "spikes" in el:
            acc["w_out"] += err.T @ el["spikes"]
        if "b_out" in acc:
            acc["b_out"] += err.sum(0) * steps

    def _apply(self, acc, batch: int):
        c = self.config
        capture = getattr(self, "_capture", None)
        if capture is not None:
            for n, value in acc.items():
                capture[n] = capture.get(n, 0) + value
            return
        rates = {"w_in": c.lr_weight, "bias": c.lr_weight, "w_rec": c.lr_weight,
                 "d_in": c.lr_delay, "d_rec": c.lr_delay, "w_out": c.lr_readout,
                 "b_out": c.lr_readout}
        for n, value in acc.items():
            p = getattr(self, n)
            p.sub_(rates[n] / batch * value)
            if n.startswith("d_"):
                p.clamp_(0.0, float(c.max_delay))
