r"""The three-factor rule in fixed point: the bit-exact reference of the learning unit.

Integer arithmetic only (``torch.int64`` tensors holding the chip's narrower
values), every operation a function of :mod:`delrec.arith` applied in the
order :class:`delrec.arith.CoreSpec` lists, which the gateware is written
from too. The forward pass is the inference golden model's
(:func:`~delrec.golden.fixed.lif_step`, :func:`~delrec.golden.fixed.readout_step`,
:func:`~delrec.golden.fixed.delayed`): the network is a
:class:`~delrec.image.FixedNetwork` (:meth:`FixedOnlineNetwork.to_image`),
the one the core runs, with optional input delays and learning fractions.
The rule is that of :mod:`delrec.golden.online` in its hard forward mode
(integer delays, as the chip runs), for one LIF layer with optional
recurrence and a leaky readout.

Stored values and their meaning in the float model's units (threshold 1):

=================  ===========================  ==================================
value              width                         float equivalent
=================  ===========================  ==================================
membrane ``v``     ``v_bits`` signed, saturated  ``v / theta``
weight ``w``       ``weight_bits + weight_frac`` ``(w >> weight_frac) / theta``
                   signed (learning copy)        (the forward uses the top bits)
bias ``b``         ``v_bits + weight_frac``      ``(b >> weight_frac) / theta``
delay ``d``        ``delay_bits + delay_frac``   ``d / 2^delay_frac`` steps
                   unsigned
weight trace       ``trace_bits`` signed         ``eps / 2^trace_frac``
delay trace        ``trace_bits`` signed         ``eps * c_lut`` with ``c_lut`` the
                                                 LUT's scale (:attr:`lut_scale`)
surrogate ``psi``  ``psi_bits + 1`` unsigned     triangle of half-width
                                                 ``2^psi_bits / theta``
learning signal    ``signal_bits`` signed        ``err * (2^(signal_bits-1) - 1)``
=================  ===========================  ==================================

Rounding: every right shift is :func:`~delrec.arith.rshift_round` (half up)
unless ``rates.stochastic``, where updates add the low bits of a 16-bit
Galois LFSR (:class:`delrec.arith.Lfsr16`, one draw per updated parameter in
row-major order, weights before delays, input before recurrent) before the
shift. Saturation: membrane, readout, scores, traces and signals saturate to
their widths; weights and biases to their learning widths; delays clip to
``[0, (D - 1) 2^f]``. Accumulators (eligibility sums, updates) are 64-bit
here; :meth:`FixedOnlineNetwork.run` records their largest magnitude so the
RTL's widths can be checked against it.

Error against the float rule (documented bound, tested on random networks):
with the float network holding the dequantised weights, integer delays and
the same leak, the spike trains agree on >= 97 % of neuron-steps and the
updates' cosine similarity with the float rule's is >= 0.9 for weights and
delays (the differences come from the floor in the leak, the 8-bit Gaussian
LUT and the quantised learning signal).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from delrec.arith import (CoreSpec, LearningRates, Lfsr16, broadcast_signal, delay_update, error_shift,
                          feedback_weight, forward_delay, forward_value, gaussian_derivative_lut,
                          parameter_step, rshift_round, sat, signed_range, step_error, surrogate,
                          trace_update, weight_update)
from delrec.image import FixedNetwork, LearningRule

from .fixed import delayed, exact_matmul, lif_step, readout_step, weighted
from .online import OnlineConfig, OnlineNetwork, accumulate_eligibility, per_synapse_traces

__all__ = ["FixedOnlineNetwork", "ONLINE_SPEC", "DEFAULT_THETA", "LEARNING_SPEC", "image_learning_config"]

i64 = torch.int64

#: The widths of the online rule's fixed point: a shift leak, 8 fraction bits below the
#: 8-bit forward weights, delays in 6.6 fixed point, a 24-bit current.
ONLINE_SPEC = CoreSpec(leak="shift", acc_bits=24, weight_frac_bits=8, delay_frac_bits=6)

#: Threshold of a network quantised from the float rule: the weights' scale (``1.0 -> 128``).
DEFAULT_THETA = 128

#: The widths a trained DelRec network is quantised to when it is to keep learning on chip: the
#: inference core's (Q0.8 multiply leak, 8-bit weights), with 8 fraction bits below the weights
#: and delays in 6.6 fixed point.
LEARNING_SPEC = CoreSpec(weight_frac_bits=8, delay_frac_bits=6)


def image_learning_config(image: FixedNetwork, **settings) -> OnlineConfig:
    """The per-step rule's configuration for a network the core runs (e.g. a quantised DelRec one).

    What learns on chip: the axonal input delays (starting at the image's,
    zero when it has none), the recurrent axonal delays of a recurrent
    layer, and the readout, every step from a per-step error; one trace per
    presynaptic channel (``gate_traces=False``), the image's reset. The
    sizes, reset and recurrence come from the image; ``settings`` override
    the rest (``sigma``, ``loss_start``, ``readout_bias``, ...).
    """
    recurrent = image.recurrent
    if recurrent and image.delay_kind != "axonal":
        raise ValueError("The core learns axonal recurrent delays; this network's are synaptic")
    values = dict(inputs=image.inputs, hidden=image.neurons, classes=image.classes, input_delays="axonal",
                  recurrent=recurrent, recurrent_delays="axonal" if recurrent else None,
                  max_delay=image.spec.depth - 1, delay_init=(0.0, 0.0), reset=image.reset, gate_traces=False,
                  signal="step", update_every=1, learn_weights=False, learn_delays=True, readout_bias=False,
                  feedback="symmetric", sigma=1.0, radius=3.0, loss="mse",
                  tau=float(image.meta.get("tau", 2.0)))
    values.update(settings)
    return OnlineConfig(**values)


class FixedOnlineNetwork:
    """Integer twin of :class:`~delrec.golden.online.OnlineNetwork` (hard forward).

    Parameters
    ----------
    config : OnlineConfig
        Network shape, delay kinds, reset, signal mode, what is learned.
        ``threshold``, ``surrogate`` and the learning rates are replaced by
        ``theta``, the triangle of ``spec.psi_bits`` and ``rates``' shifts;
        ``tau`` becomes the nearest leak parameter of ``spec``.
    spec : CoreSpec
        Widths, leak mode and learning fractions.
    rates : LearningRates
        The updates' shifts (and stochastic rounding).
    seed : int
        Initial parameters (uniform, as the float network's) and LFSR seed.
    theta : int
        Threshold: the scale of the weights (a float weight of 1 is ``theta``).
    """

    def __init__(self, config: OnlineConfig, spec: CoreSpec = ONLINE_SPEC,
                 rates: LearningRates = LearningRates(), seed: int = 0, theta: int = DEFAULT_THETA):
        if not isinstance(spec, CoreSpec):
            raise TypeError(f"spec must be a delrec.arith.CoreSpec, not {spec!r}")
        if not isinstance(rates, LearningRates):
            raise TypeError(f"rates must be a delrec.arith.LearningRates, not {rates!r}")
        if config.max_delay > spec.depth - 1:
            raise ValueError(f"Maximum delay {config.max_delay} exceeds the chip's D - 1 = "
                             f"{spec.depth - 1}")
        if config.readout_decay:
            raise ValueError("A quantised float readout has no leak (readout_decay must be 0), "
                             f"not {config.readout_decay!r}")
        vmax = signed_range(spec.v_bits)[1]
        if not 1 <= theta <= vmax:
            raise ValueError(f"Threshold must be in 1..{vmax}, not {theta!r}")
        self.config, self.spec, self.rates = config, spec, rates
        self.theta = int(theta)
        self.leak = spec.leak_param(config.decay)
        self.readout_leak = spec.leak_param(0.0)
        self.target = self.theta         # the per-step error's target of the label's unit
        self.score_scale = self.theta    # the host's softmax reads scores / score_scale
        self.lfsr = Lfsr16(1 + seed % 65535)
        self.set_sigma(config.sigma)
        self.load_float(OnlineNetwork(config, seed=seed))

    # -- parameters ------------------------------------------------------------------
    @staticmethod
    def equivalent_shifts(config: OnlineConfig, spec: CoreSpec = ONLINE_SPEC, batch: int = 1,
                          theta: int = DEFAULT_THETA) -> dict:
        """Learning-rate shifts that make the integer updates match the float rule's.

        :meth:`exact_shifts` rounded to the nearest integer (and at least 0).
        """
        return {k: max(0, int(round(v)))
                for k, v in FixedOnlineNetwork.exact_shifts(config, spec, batch, theta).items()}

    @staticmethod
    def chip_rate_factors(config: OnlineConfig, spec: CoreSpec, rates: LearningRates, batch: int = 1,
                          theta: int = DEFAULT_THETA) -> dict:
        """The rates ``rates``' shifts apply, as multiples of ``config``'s float rates.

        A shift ``k`` where :meth:`exact_shifts` gives ``x`` applies
        ``2^(x - k)`` times the float rate: between ``1/sqrt(2)`` and
        ``sqrt(2)`` for the shifts of :meth:`equivalent_shifts`. Keys are
        ``lr_weight``, ``lr_delay`` and ``lr_readout``.
        """
        exact = FixedOnlineNetwork.exact_shifts(config, spec, batch, theta)
        return {name.removesuffix("_shift"): 2.0 ** (x - getattr(rates, name)) for name, x in exact.items()}

    @staticmethod
    def exact_shifts(config: OnlineConfig, spec: CoreSpec = ONLINE_SPEC, batch: int = 1,
                     theta: int = DEFAULT_THETA) -> dict:
        """The real-valued shifts ``log2(...)`` at which the integer updates equal the float rule's.

        From the scale of each factor (signal ``theta * top / 2^(weight_bits-1)``,
        surrogate ``theta``, traces ``2^trace_frac`` and the LUT's unit) the
        float step ``eta * sum L e / batch`` in stored units is
        ``acc / 2^x``; the chip shifts by an integer ``k``
        (:meth:`equivalent_shifts`: ``x`` rounded, an effective rate within a
        factor of sqrt(2) of the float one).

        Delay traces kept per synapse hold ``w D >> (weight_bits - 1)``;
        factored ones (axonal delays, soft reset or ungated traces) hold ``D``
        and the update multiplies by the forward weight without that shift,
        so their accumulator is ``2^(weight_bits - 1)`` larger and their shift
        that much more. One shift serves both delay streams: it follows the
        input delays when they are learnable (else the recurrent ones), and a
        network mixing the two layouts learns its recurrent delays at
        ``2^(weight_bits - 1)`` times (or a ``2^(weight_bits - 1)``-th of)
        the float rate.
        """
        top = (1 << (spec.signal_bits - 1)) - 1
        half = 1 << (spec.weight_bits - 1)
        lut_scale = math.exp(-0.5) / (config.sigma ** 2 * math.sqrt(2 * math.pi)) / \
            ((1 << (spec.lut_bits - 1)) - 1)
        w_unit = theta * (1 << spec.weight_frac_bits)
        d_unit = 1 << spec.delay_frac_bits
        trace_w = 1 << spec.trace_frac_bits
        if config.signal == "sample":
            err_unit = top
            signal = theta * top / half
        else:
            err_unit = theta
            signal = theta * (theta / (1 << error_shift(theta, spec.signal_bits))) / half
        kind = config.input_delays if config.input_delays is not None else config.recurrent_delays
        factored = kind == "axonal" and not per_synapse_traces(config, kind)
        trace_d = theta / half / lut_scale * (half if factored else 1)
        ratios = {
            "lr_weight_shift": signal * theta * trace_w / (config.lr_weight * w_unit / batch),
            "lr_delay_shift": signal * theta * trace_d / (config.lr_delay * d_unit / batch),
            "lr_readout_shift": err_unit / (config.lr_readout * w_unit / batch),
        }
        return {k: math.log2(v) for k, v in ratios.items()}

    @property
    def lut_scale(self) -> float:
        """Float value of one LUT unit of the delay-derivative kernel."""
        c = self.config
        top = (1 << (self.spec.lut_bits - 1)) - 1
        return math.exp(-0.5) / (c.sigma * c.sigma * math.sqrt(2 * math.pi)) / top

    def load_float(self, net: OnlineNetwork) -> None:
        """Quantise a float network's parameters (round half up, saturate, clip)."""
        s = self.spec
        wscale = self.theta * (1 << s.weight_frac_bits)

        def quantise(w, bits):
            return None if w is None else sat(torch.floor(w.detach() * wscale + 0.5).to(i64), bits)

        def delay(d):
            if d is None:
                return None
            q = torch.floor(d.detach() * (1 << s.delay_frac_bits) + 0.5).to(i64)
            return q.clamp(0, s.delay_max)

        wbits = s.weight_store_bits
        self.w_in, self.w_rec, self.w_out = (quantise(w, wbits) for w in (net.w_in, net.w_rec, net.w_out))
        self.d_in, self.d_rec = delay(net.d_in), delay(net.d_rec)
        self.bias = quantise(net.bias, s.bias_store_bits)
        self.b_out = quantise(net.b_out, s.readout_bias_store_bits)
        self.feedback = quantise(net.feedback, wbits)

    def to_float(self) -> OnlineNetwork:
        """A float network holding exactly the values this one computes with."""
        s = self.spec
        net = OnlineNetwork(self.config)

        def fwd(w):
            return forward_value(w, s.weight_frac_bits).to(torch.float64) / self.theta

        net.w_in.copy_(fwd(self.w_in))
        net.w_out.copy_(fwd(self.w_out))
        net.feedback.copy_(fwd(self.feedback))
        if self.w_rec is not None:
            net.w_rec.copy_(fwd(self.w_rec))
        for name in ("d_in", "d_rec"):
            if getattr(self, name) is not None:
                getattr(net, name).copy_(getattr(self, name).to(torch.float64)
                                         / (1 << s.delay_frac_bits))
        net.bias.copy_(fwd(self.bias))
        net.b_out.copy_(fwd(self.b_out))
        return net

    # -- the network the core runs ---------------------------------------------------
    def to_image(self) -> FixedNetwork:
        """The network as the core's image (numpy): the parameters as they are now.

        Recurrent delays default to zeros (a layer without learnable recurrent
        delays reads its spikes one step later), the recurrent weights of a
        feedforward layer are zeros, ``score_start`` is ``loss_start``.
        """
        c = self.config

        def np64(t):
            return t.detach().cpu().numpy().astype(np.int64)

        N = c.hidden
        w_rec = np64(self.w_rec) if self.w_rec is not None else np.zeros((N, N), np.int64)
        d_rec = np64(self.d_rec) if self.d_rec is not None else np.zeros(N, np.int64)
        return FixedNetwork(spec=self.spec, w_in=np64(self.w_in), w_rec=w_rec, delays=d_rec,
                            bias=np64(self.bias), w_out=np64(self.w_out), bias_out=np64(self.b_out),
                            theta=self.theta, leak=self.leak, readout_leak=self.readout_leak,
                            reset=c.reset, input_delays=None if self.d_in is None else np64(self.d_in),
                            score_start=c.loss_start, meta=dict(source="FixedOnlineNetwork"))

    @classmethod
    def from_image(cls, image: FixedNetwork, config: OnlineConfig, rates: LearningRates = LearningRates(),
                   seed: int = 0, target: int | None = None) -> "FixedOnlineNetwork":
        """The rule learning on ``image`` (a network the core runs), as ``config`` describes it.

        ``config`` names what learns and how (delay kinds, signal, learning
        flags, ``sigma``); its sizes, reset and recurrence must be the
        image's. Input delays the image lacks start at zero. ``target`` is the
        per-step error's target of the label's readout unit (default
        ``theta``).
        """
        if not isinstance(image, FixedNetwork):
            raise TypeError(f"image must be a delrec.image.FixedNetwork, not {image!r}")
        sizes = (image.inputs, image.neurons, image.classes)
        if (config.inputs, config.hidden, config.classes) != sizes:
            raise ValueError(f"The configuration has {config.inputs} inputs, {config.hidden} neurons and "
                             f"{config.classes} classes; the image {sizes[0]}, {sizes[1]} and {sizes[2]}")
        if config.reset != image.reset:
            raise ValueError(f"The configuration resets {config.reset!r}ly, the image {image.reset!r}ly")
        if config.recurrent != image.recurrent:
            raise ValueError(f"The configuration has recurrent={config.recurrent}, the image "
                             f"{'has' if image.recurrent else 'has no'} recurrent weights")
        if image.recurrent and config.recurrent_delays != image.delay_kind:
            raise ValueError(f"The image's recurrent delays are {image.delay_kind}, the configuration's "
                             f"{config.recurrent_delays!r}")
        if image.input_delay_kind not in (None, config.input_delays):
            raise ValueError(f"The image's input delays are {image.input_delay_kind}, the "
                             f"configuration's {config.input_delays!r}")
        if config.max_delay > image.spec.depth - 1:
            raise ValueError(f"Maximum delay {config.max_delay} exceeds the chip's D - 1 = "
                             f"{image.spec.depth - 1}")
        net = cls.__new__(cls)
        net.config, net.spec, net.rates = config, image.spec, rates
        net.theta, net.leak, net.readout_leak = image.theta, image.leak, image.readout_leak
        net.target = image.theta if target is None else int(target)
        net.score_scale = image.theta
        net.lfsr = Lfsr16(1 + seed % 65535)
        net.set_sigma(config.sigma)
        t = lambda a: torch.from_numpy(np.asarray(a, np.int64).copy())  # noqa: E731
        net.w_in, net.bias, net.w_out, net.b_out = t(image.w_in), t(image.bias), t(image.w_out), \
            t(image.bias_out)
        net.w_rec = t(image.w_rec) if config.recurrent else None
        net.d_rec = t(image.delays) if config.recurrent and config.recurrent_delays else None
        if config.input_delays is None:
            net.d_in = None
        elif image.input_delays is not None:
            net.d_in = t(image.input_delays)
        else:
            shape = (config.inputs,) if config.input_delays == "axonal" else (config.hidden, config.inputs)
            net.d_in = torch.zeros(shape, dtype=i64)
        net.feedback = net.w_out.T.clone()
        return net

    def rule(self) -> LearningRule:
        """The rule as a learning core holds it (:class:`~delrec.image.LearningRule`).

        Raises ``ValueError`` naming the first setting the core's learning
        unit does not run: it learns per step (``signal="step"``,
        ``update_every=1``) axonal input and recurrent delays and the
        readout, with symmetric feedback, one trace per presynaptic channel
        and round-half-up updates.
        """
        c = self.config
        per_synapse = any(per_synapse_traces(c, kind) for kind in (c.input_delays, c.recurrent_delays))
        problems = [
            (c.signal != "step", f"signal={c.signal!r} (the core forms its learning signal every step)"),
            (c.update_every != 1, f"update_every={c.update_every!r} (the core updates every step: 1)"),
            (c.learn_weights, "learn_weights=True (the core learns delays and the readout; the input and "
                              "recurrent weights stay)"),
            (c.input_delays == "synaptic", "input_delays='synaptic' (the core's input delays are axonal)"),
            (c.recurrent and c.recurrent_delays == "synaptic",
             "recurrent_delays='synaptic' (the core learns axonal recurrent delays)"),
            (per_synapse, "reset='hard' with gate_traces=True (the core keeps one trace per presynaptic "
                          "channel: gate_traces=False)"),
            (c.feedback != "symmetric", f"feedback={c.feedback!r} (the core broadcasts through the readout "
                                        "weights)"),
            (self.rates.stochastic, "stochastic rounding (the core rounds half up)"),
        ]
        for bad, text in problems:
            if bad:
                raise ValueError(f"The core's learning unit cannot run this rule: {text}")
        return LearningRule(spec=self.spec, lut=self.lut.numpy().astype(np.int64),
                            lr_delay_shift=self.rates.lr_delay_shift,
                            lr_readout_shift=self.rates.lr_readout_shift, loss_start=c.loss_start,
                            target=self.target, input_delays=c.learn_delays and c.input_delays is not None,
                            recurrent_delays=c.learn_delays and c.recurrent and c.recurrent_delays is not None,
                            readout_bias=c.readout_bias)

    def set_sigma(self, sigma: float) -> None:
        """A new surrogate width: the host reloads the LUT (and, in training, the delay shift)."""
        self.config.sigma = float(sigma)
        self.lut = torch.tensor(gaussian_derivative_lut(sigma, self.config.radius,
                                                        self.spec.delay_frac_bits, self.spec.lut_bits),
                                dtype=i64)
        self.reach = (len(self.lut) - 1) // 2

    def state_dict(self) -> dict:
        state = {n: p.clone() for n, p in self.parameters().items()}
        state["feedback"] = self.feedback.clone()
        state["lfsr"] = self.lfsr.state
        return state

    def load_state_dict(self, state: dict) -> None:
        for n, p in self.parameters().items():
            if tuple(state[n].shape) != tuple(p.shape):
                raise ValueError(f"Stored {n} has shape {list(state[n].shape)}, expected {list(p.shape)}")
            setattr(self, n, state[n].clone().to(i64))
        self.feedback = state["feedback"].clone()
        self.lfsr.state = int(state["lfsr"])

    def forward_weight(self, w: torch.Tensor) -> torch.Tensor:
        return forward_value(w, self.spec.weight_frac_bits)

    def parameters(self) -> dict:
        names = ("w_in", "d_in", "bias", "w_rec", "d_rec", "w_out", "b_out")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @property
    def history(self) -> int:
        """Steps of presynaptic history kept: the longest tap of the widest delay, plus margin."""
        return self.spec.depth + 1 + (self.reach >> self.spec.delay_frac_bits) + 2

    # -- delayed reads ---------------------------------------------------------------
    def _read(self, hist, d, kind, offset, t, derivative: bool):
        """The delayed train ``[B, P]`` (or ``[B, N, P]``) and, when asked, its delay derivative.

        ``D = sum_m lut[m 2^f - d] x[t - offset - m]`` over the taps
        ``|m 2^f - d| <= R`` (:func:`delrec.arith.tap_range`, vectorised).
        """
        f = self.spec.delay_frac_bits
        if kind is None:
            return delayed(hist, torch.full((hist.shape[2],), offset, dtype=i64), t), None
        value = delayed(hist, forward_delay(d, f) + offset, t)
        if not derivative:
            return value, None
        base = d >> f
        total = torch.zeros_like(value)
        steps = (self.reach >> f) + 1
        for r in range(-steps, steps + 2):
            m = base + r
            x = (m << f) - d
            inside = (x.abs() <= self.reach) & (m >= 0)
            weight = torch.where(inside, self.lut[(x + self.reach).clamp(0, 2 * self.reach)],
                                 torch.zeros_like(x))
            total = total + weight * delayed(hist, m.clamp(min=0) + offset, t)
        return value, total

    # -- one batch -------------------------------------------------------------------
    def run(self, x: torch.Tensor, labels: torch.Tensor | None = None, learn: bool = False,
            signal: torch.Tensor | None = None, record: bool = False) -> dict:
        """Run ``x [T, B, C]`` (integer spike counts); learn if asked.

        The learning signal comes from ``labels`` (per step: ``err = u - target``
        on chip; per sample: the host's softmax error, quantised to
        ``signal_bits``) or is given as ``signal`` ``[T, B, N]`` / ``[B, N]``
        integers (a host stream), checked against ``signal_bits``.
        Returns ``outputs [T, B, K]`` (readout values ``V``), ``scores [B, K]``,
        ``spikes``/``membrane`` (the charge ``h``)/``score_steps`` with ``record``, and
        ``peaks`` (largest accumulator magnitudes) when learning. With
        ``record`` and a per-sample signal, ``learning`` holds the state at
        the end of the sample, before the update: ``traces``,
        ``eligibility`` sums and the ``signal`` applied; with a per-step
        signal, ``learning_steps`` holds per step, after that step's update
        (if any), the ``traces``, the last ``signal`` computed (zeros before
        ``loss_start``) and every parameter (``parameters``).
        """
        c, s = self.config, self.spec
        if x.dim() != 3 or x.shape[2] != c.inputs:
            raise ValueError(f"Input must have shape [T, B, {c.inputs}], not {tuple(x.shape)}")
        if x.dtype.is_floating_point and not torch.equal(x, torch.floor(x)):
            raise ValueError("Fixed-point input must be integer spike counts")
        x = x.to(i64)
        if x.numel() and int(x.min()) < 0:
            raise ValueError(f"Spike counts must be non-negative, not {int(x.min())}")
        T, B, _ = x.shape
        N = c.hidden
        if signal is not None:
            lo, hi = signed_range(s.signal_bits)
            if int(signal.min()) < lo or int(signal.max()) > hi:
                raise ValueError(f"Learning signal {int(signal.min())}..{int(signal.max())} outside "
                                 f"the {s.signal_bits}-bit range {lo}..{hi}")
            want = (T, B, N) if c.signal == "step" else (B, N)
            if tuple(signal.shape) != want:
                raise ValueError(f"Learning signal must have shape {list(want)}, not "
                                 f"{list(signal.shape)}")
        if learn and labels is None and signal is None:
            raise ValueError("Learning needs labels or a learning signal")
        L = self.history
        hist_in = torch.zeros(L, B, c.inputs, dtype=i64)
        hist_rec = torch.zeros(L, B, N, dtype=i64) if c.recurrent else None
        v = torch.zeros(B, N, dtype=i64)
        u = torch.zeros(B, c.classes, dtype=i64)
        score = torch.zeros(B, c.classes, dtype=i64)
        s_prev = torch.zeros(B, N, dtype=i64)
        traces, elig = {}, {}
        acc = {n: torch.zeros_like(p) for n, p in self.parameters().items()} if learn else None
        peaks = {}
        outputs, spikes_rec, mem_rec, score_rec, step_learning = [], [], [], [], []
        last_signal = torch.zeros(B, N, dtype=i64)
        for t in range(T):
            hist_in[t % L] = x[t]
            if c.recurrent:
                hist_rec[t % L] = 0
            current = torch.zeros(B, N, dtype=i64)
            streams = [("in", hist_in, self.w_in, self.d_in, c.input_delays, 0)]
            if c.recurrent:
                streams.append(("rec", hist_rec, self.w_rec, self.d_rec, c.recurrent_delays, 1))
            reads = []
            for name, hist, w, d, kind, offset in streams:
                need_d = learn and c.learn_delays and kind is not None
                pre, deriv = self._read(hist, d, kind, offset, t, need_d)
                wf = self.forward_weight(w)
                current = current + weighted(pre, wf)
                reads.append((name, kind, pre, deriv, wf))
            h, spike, v = lif_step(v, current, self.forward_weight(self.bias), self.theta, self.leak,
                                   c.reset, s)
            psi = surrogate(h, self.theta, s.psi_bits)
            if learn:
                for name, kind, pre, deriv, wf in reads:
                    self._traces(traces, name, kind, pre, deriv, wf, s_prev)
            if c.recurrent:
                hist_rec[t % L] = spike
            u, score = readout_step(u, exact_matmul(spike, self.forward_weight(self.w_out)),
                                    self.forward_weight(self.b_out), self.readout_leak, score,
                                    t >= c.loss_start, s)
            outputs.append(u)
            if record:
                spikes_rec.append(spike)
                mem_rec.append(h)
                score_rec.append(score)
            if learn and t >= c.loss_start:
                if c.signal == "sample":
                    accumulate_eligibility(c, elig, traces, psi, spike)
                else:
                    sig = signal[t] if signal is not None else self._step_signal(u, labels)
                    last_signal = sig
                    self._step_accumulate(acc, traces, sig, psi, spike, u, labels)
            if learn and c.update_every and (t + 1) % c.update_every == 0:
                self._apply_and_clear(acc, peaks)
            if record and learn and c.signal == "step":  # what the chip holds after this step
                step_learning.append({"traces": {k: val.clone() for k, val in traces.items()},
                                      "signal": last_signal.clone(),
                                      "parameters": {n: p.clone() for n, p in self.parameters().items()}})
            s_prev = spike
        outputs = torch.stack(outputs)
        scores = score
        if learn:
            if c.signal == "sample":
                sig = signal if signal is not None else self.sample_signal(scores, labels)
                self._sample_accumulate(acc, elig, sig, scores, labels, T - min(c.loss_start, T))
                if record:  # the learning state the chip holds when the signal arrives
                    result_learning = {"traces": {k: val.clone() for k, val in traces.items()},
                                       "eligibility": {k: val.clone() for k, val in elig.items()},
                                       "signal": sig.clone()}
            if not (c.update_every and T % c.update_every == 0):
                self._apply_and_clear(acc, peaks)
        result = {"outputs": outputs, "scores": scores}
        if labels is not None:  # the host's view: cross-entropy of the scores in threshold units
            result["loss"] = F.cross_entropy(scores.to(torch.float64) / self.score_scale, labels)
        if learn:
            result["peaks"] = peaks
        if record:
            result["spikes"] = torch.stack(spikes_rec)
            result["membrane"] = torch.stack(mem_rec)
            result["score_steps"] = torch.stack(score_rec)
            if learn and c.signal == "sample":
                result["learning"] = result_learning
            elif learn:
                result["learning_steps"] = step_learning
        return result

    # -- learning signal ---------------------------------------------------------------
    def output_error(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The host's per-sample error: ``round((softmax(scores / scale) - onehot) * top)``."""
        s = self.spec
        top = (1 << (s.signal_bits - 1)) - 1
        p = F.softmax(scores.to(torch.float64) / self.score_scale, dim=-1)
        err = p - F.one_hot(labels, self.config.classes).to(torch.float64)
        return torch.floor(err * top + 0.5).to(i64)

    def _broadcast(self, err: torch.Tensor) -> torch.Tensor:
        """``L_i = broadcast_signal(sum_k err_k feedback_weight(B_ik))``: symmetric or random ``B``."""
        weights = self.w_out.T if self.config.feedback == "symmetric" else self.feedback
        return broadcast_signal(err @ feedback_weight(weights, self.spec).T, self.spec)

    def sample_signal(self, scores, labels):
        return self._broadcast(self.output_error(scores, labels))

    def _step_target(self, labels):
        return F.one_hot(labels, self.config.classes).to(i64) * self.target

    def _step_signal(self, u, labels):
        """On-chip per-step signal: ``e = step_error(u - target onehot)``, then broadcast."""
        s = self.spec
        err = step_error(u - self._step_target(labels), error_shift(self.target, s.signal_bits),
                         s.signal_bits)
        return self._broadcast(err)

    # -- traces and accumulators ---------------------------------------------------------
    def _traces(self, traces, name, kind, pre, deriv, wf, s_prev):
        """Advance the weight, delay and bias traces of one projection: :func:`delrec.arith.trace_update`.

        A trace gated by a hard reset starts from zero after its neuron's spike.
        """
        c, s = self.config, self.spec
        per_synapse = per_synapse_traces(c, kind)
        gated = c.reset == "hard" and c.gate_traces

        def advance(key, value, gate):
            old = traces.get(key)
            if old is None:
                old = torch.zeros_like(value)
            elif gated:
                old = old * gate
            traces[key] = trace_update(old, value, self.leak, s)

        gate = (1 - s_prev).unsqueeze(-1)
        if c.learn_weights:
            value = pre << s.trace_frac_bits
            if per_synapse and kind != "synaptic":
                value = value.unsqueeze(1).expand(-1, c.hidden, -1)
            advance(f"w_{name}", value, gate)
        if deriv is not None:
            if kind == "synaptic":
                value = rshift_round(wf * deriv, s.weight_bits - 1)
            elif per_synapse:
                value = rshift_round(wf * deriv.unsqueeze(1), s.weight_bits - 1)
            else:
                value = deriv
            advance(f"d_{name}", value, gate)
        if c.learn_weights and name == "in":
            one = torch.full((s_prev.shape[0], c.hidden), 1 << s.trace_frac_bits, dtype=i64)
            advance("bias", one, 1 - s_prev)

    def _sample_accumulate(self, acc, el, sig, scores, labels, steps):
        c = self.config
        for name, kind in (("in", c.input_delays), ("rec", c.recurrent_delays)):
            w = self.w_in if name == "in" else self.w_rec
            if f"w_{name}" in el:
                acc[f"w_{name}"] += torch.einsum("bi,bij->ij", sig, el[f"w_{name}"])
            if f"d_{name}" in el:
                if per_synapse_traces(c, kind):
                    dims = "bi,bij->ij" if kind == "synaptic" else "bi,bij->j"
                    acc[f"d_{name}"] += torch.einsum(dims, sig, el[f"d_{name}"])
                else:
                    acc[f"d_{name}"] += torch.einsum("bi,ij,bij->j", sig, self.forward_weight(w),
                                                     el[f"d_{name}"])
        if "bias" in el:
            acc["bias"] += (sig * el["bias"]).sum(0)
        err = self.output_error(scores, labels) if labels is not None else None
        if err is not None:
            acc["w_out"] += err.T @ el["spikes"]
            if c.readout_bias:
                acc["b_out"] += err.sum(0) * steps

    def _step_accumulate(self, acc, traces, sig, psi, spike, u, labels):
        c = self.config
        lp = sig * psi
        for name, kind in (("in", c.input_delays), ("rec", c.recurrent_delays)):
            w = self.w_in if name == "in" else self.w_rec
            tw, td = traces.get(f"w_{name}"), traces.get(f"d_{name}")
            if c.learn_weights and tw is not None:
                acc[f"w_{name}"] += torch.einsum("bi,bij->ij", lp, tw) if tw.dim() == 3 else lp.T @ tw
            if c.learn_delays and td is not None:
                if kind == "synaptic":
                    acc[f"d_{name}"] += torch.einsum("bi,bij->ij", lp, td)
                elif td.dim() == 3:
                    acc[f"d_{name}"] += torch.einsum("bi,bij->j", lp, td)
                else:
                    acc[f"d_{name}"] += ((lp @ self.forward_weight(w)) * td).sum(0)
        if c.learn_weights:
            acc["bias"] += (lp * traces["bias"]).sum(0)
        if labels is not None:
            err = u - self._step_target(labels)
            acc["w_out"] += err.T @ spike
            if c.readout_bias:
                acc["b_out"] += err.sum(0)

    def accumulators(self, x, labels=None, signal=None) -> dict:
        """The integer accumulators of one batch (before the learning-rate shifts), not applied."""
        self._capture = {}
        try:
            self.run(x, labels, learn=True, signal=signal)
            return self._capture
        finally:
            del self._capture

    def _apply_and_clear(self, acc, peaks):
        """Apply the accumulated updates, record their peaks, and zero them."""
        for n, a in acc.items():
            peaks[n] = max(peaks.get(n, 0), int(a.abs().max()) if a.numel() else 0)
        self._apply(acc)
        for a in acc.values():
            a.zero_()

    def _apply(self, acc):
        if hasattr(self, "_capture"):   # not applied: the chunks of update_every add up
            for n, a in acc.items():
                self._capture[n] = self._capture[n] + a if n in self._capture else a.clone()
            return
        c, s, r = self.config, self.spec, self.rates
        shifts = {"w_in": r.lr_weight_shift, "bias": r.lr_weight_shift, "w_rec": r.lr_weight_shift,
                  "d_in": r.lr_delay_shift, "d_rec": r.lr_delay_shift,
                  "w_out": r.lr_readout_shift, "b_out": r.lr_readout_shift}
        widths = {"bias": s.bias_store_bits, "b_out": s.readout_bias_store_bits}
        order = ["w_in", "bias", "w_rec", "w_out", "b_out", "d_in", "d_rec"]
        for n in order:
            if n not in acc:
                continue
            if n.startswith("d_") and not c.learn_delays:
                continue
            if n in ("w_in", "bias", "w_rec") and not c.learn_weights:
                continue
            k = shifts[n]
            a = acc[n]
            if r.stochastic and k:
                flat = a.flatten()
                noise = torch.tensor([self.lfsr.draw(k) for _ in range(flat.numel())], dtype=i64)
                step = parameter_step(flat, k, noise).view_as(a)
            else:
                step = parameter_step(a, k)
            p = getattr(self, n)
            if n.startswith("d_"):
                setattr(self, n, delay_update(p, step, s))
            else:
                setattr(self, n, weight_update(p, step, widths.get(n, s.weight_store_bits)))
