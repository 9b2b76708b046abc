"""The arithmetic specification of the chip: widths, rounding, order of operations.

This module is the one place the fixed-point golden models
(:mod:`delrec.golden.fixed`, :mod:`delrec.golden.online_fixed`) and the
gateware (:mod:`delrec.hw`) are written from, for inference and for the
three-factor learning rule. It is plain Python (no torch, no Amaranth), so
every side imports it. Every integer operation of the chip is one of the
functions below, each a scalar oracle the gateware units are tested against;
:class:`CoreSpec` holds the widths and lists the order in which they apply.

The functions take Python integers. Those marked *elementwise* also take
numpy integer arrays and ``torch.int64`` tensors (they only use ``+``,
``-``, ``*``, ``>>``, ``<<``, ``abs`` and :func:`clamp`), which is how the
golden models apply them to whole layers and batches: one definition, no
private copies.

Notation: ``sat_b(x)`` clamps to the signed range of ``b`` bits
``[-2^(b-1), 2^(b-1) - 1]``; ``x >> k`` is an arithmetic shift (floor);
``rshift_round(x, k) = (x + 2^(k-1)) >> k`` rounds half up (``k = 0``: ``x``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

__all__ = [
    "CoreSpec", "LearningRates", "LEAK_MODES", "RESET_MODES", "DELAY_KINDS",
    "signed_range", "clamp", "sat", "rshift_round", "decay", "forward_value", "forward_delay",
    "neuron_update", "readout_update", "surrogate",
    "gaussian_derivative_lut", "tap_range", "delay_derivative", "trace_update", "step_error",
    "error_shift", "feedback_weight", "broadcast_signal", "parameter_step", "delay_update",
    "weight_update", "Lfsr16", "known_fields",
]

LEAK_MODES = ("multiply", "shift")
RESET_MODES = ("hard", "soft")
#: One delay per presynaptic neuron (or input channel), or one per connection.
DELAY_KINDS = ("axonal", "synaptic")


# ---------------------------------------------------------------------------
# integer primitives
# ---------------------------------------------------------------------------

def signed_range(bits: int) -> tuple[int, int]:
    """``(min, max)`` of a two's-complement integer of ``bits`` bits."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def clamp(x, lo: int, hi: int):
    """``min(max(x, lo), hi)``; elementwise (``clamp`` of a tensor, ``clip`` of an array)."""
    if isinstance(x, int):
        return lo if x < lo else hi if x > hi else x
    if hasattr(x, "clamp"):
        return x.clamp(lo, hi)
    return x.clip(lo, hi)


def sat(x, bits: int):
    """Clamp ``x`` to the signed range of ``bits`` bits; elementwise."""
    return clamp(x, *signed_range(bits))


def rshift_round(x, k: int):
    """``x / 2^k`` rounded half up (toward +infinity on ties); exact for ``k = 0``; elementwise."""
    return x if k == 0 else (x + (1 << (k - 1))) >> k


def decay(x, param, mode: str, frac_bits: int):
    """The leak of the membrane (and of the learning traces), floor rounding; elementwise.

    ``mode="multiply"``: ``(x * param) >> frac_bits``, ``param`` in
    ``0..2^frac_bits`` (a Q0.frac_bits factor ``alpha``; ``2^frac_bits`` is no
    leak). ``mode="shift"``: ``x - (x >> param)``, ``param`` in ``0..v_bits``
    (``alpha = 1 - 2^-param``; ``0`` forgets everything).
    """
    if mode == "multiply":
        return (x * param) >> frac_bits
    if mode == "shift":
        return x - (x >> param)
    raise ValueError(f"Leak mode must be one of {LEAK_MODES}, not {mode!r}")


def forward_value(x, frac_bits: int):
    """The forward part of a learning copy: ``x >> frac_bits`` (floor); elementwise.

    Weights and biases that learn keep ``frac_bits`` more bits below the ones
    the forward pass uses (``CoreSpec.weight_frac_bits``); ``0``: the value itself.
    """
    return x >> frac_bits


def forward_delay(d, frac_bits: int):
    """The integer delay the forward pass reads: ``rshift_round(d, frac_bits)``; elementwise.

    ``d`` is in units of ``2^-frac_bits`` steps (``CoreSpec.delay_frac_bits``).
    """
    return rshift_round(d, frac_bits)


# ---------------------------------------------------------------------------
# inference: the LIF network the core runs (golden: golden/fixed.py)
# ---------------------------------------------------------------------------

def neuron_update(v: int, current: int, bias: int, theta: int, leak_param: int,
                  reset: str, spec: "CoreSpec") -> tuple[int, int, int]:
    """One neuron of the core, one step: ``(h, spike, v_next)``.

    ``h = sat_v(decay(v) + current + bias)``; ``spike = h >= theta``;
    ``v_next = h - theta`` (soft) or ``0`` (hard) if it spiked, else ``h``.
    ``h - theta`` cannot overflow because ``h >= theta > 0``. ``bias`` is
    the forward bias (:func:`forward_value` of a learning copy).
    """
    h = sat(decay(v, leak_param, spec.leak, spec.decay_bits) + current + bias, spec.v_bits)
    spike = int(h >= theta)
    if spike:
        return h, 1, (h - theta if reset == "soft" else 0)
    return h, 0, h


def readout_update(v: int, current: int, bias: int, leak_param: int, score: int,
                   spec: "CoreSpec", counts: bool = True) -> tuple[int, int]:
    """One readout unit, one step: ``(v_next, score_next)``.

    ``v_next = sat_r(decay(v) + current + bias)``, ``score_next = sat_s(score + v_next)``
    when the step ``counts`` (from the ``score_start`` step on), else ``score``.
    """
    v = sat(decay(v, leak_param, spec.leak, spec.decay_bits) + current + bias, spec.readout_bits)
    return v, (sat(score + v, spec.score_bits) if counts else score)


def surrogate(h, theta, psi_bits: int):
    """The surrogate spike derivative ``psi = max(0, 2^psi_bits - |h - theta|)``; elementwise.

    A triangle of half-width ``2^psi_bits`` membrane units around the
    threshold, ``0..2^psi_bits`` (``psi_bits + 1`` bits unsigned).
    """
    top = 1 << psi_bits
    return clamp(top - abs(h - theta), 0, top)


# ---------------------------------------------------------------------------
# learning: the three-factor rule (golden: golden/online_fixed.py)
# ---------------------------------------------------------------------------

def gaussian_derivative_lut(sigma: float, radius: float, frac_bits: int, out_bits: int) -> list[int]:
    """Samples of the delay-derivative kernel ``K(x) = x / sigma^2 G(x)`` for the chip.

    ``x = m - d`` (lag minus delay) in units of ``2^-frac_bits`` steps, for
    ``x`` from ``-R`` to ``R`` with ``R = ceil(radius * sigma * 2^frac_bits)``
    (the *reach*); entry ``x + R`` holds ``round(K(x) / K_max * (2^(out_bits-1) - 1))``.
    The table is odd: ``lut[R + x] = -lut[R - x]``.
    """
    if not (sigma > 0 and radius > 0):
        raise ValueError(f"Gaussian width and radius must be positive, not {sigma!r}, {radius!r}")
    scale = 1 << frac_bits
    reach = int(math.ceil(radius * sigma * scale))
    top = (1 << (out_bits - 1)) - 1
    kmax = math.exp(-0.5) / sigma  # K(sigma) * sigma^2 * sqrt(2 pi): the shape's peak
    table = []
    for i in range(-reach, reach + 1):
        x = i / scale
        k = x / sigma * math.exp(-0.5 * (x / sigma) ** 2) / sigma
        table.append(int(math.floor(k / kmax * top + 0.5)) if i >= 0 else 0)
    for i in range(reach):  # odd symmetry exactly, whatever the rounding
        table[i] = -table[2 * reach - i]
    return table


def tap_range(d: int, reach: int, frac_bits: int, t: int, offset: int) -> tuple[int, int]:
    """The taps ``lo..hi`` (inclusive; empty when ``lo > hi``) of a delay's derivative at step ``t``.

    The integers ``m >= 0`` with ``|m 2^f - d| <= reach`` whose sample exists,
    ``m + offset <= t`` (``offset`` is 1 for a recurrent connection, whose
    lag-``m`` tap reads the spike of step ``t - 1 - m``):
    ``lo = max(0, ceil((d - reach) / 2^f))``, ``hi = min(floor((d + reach) / 2^f), t - offset)``.
    """
    lo = max(0, -((reach - d) >> frac_bits))
    hi = min((d + reach) >> frac_bits, t - offset)
    return lo, hi


def delay_derivative(d: int, lut: list[int], frac_bits: int, sample) -> int:
    """``D = sum_m lut[m 2^f - d + R] x_m`` over :func:`tap_range`'s taps (exact).

    The Gaussian surrogate of the derivative of a delayed train with respect
    to its delay ``d`` (``2^-f`` steps). ``sample(m)`` is the train's value
    at tap ``m`` (the event count, or spike, ``m + offset`` steps ago); the
    caller's :func:`tap_range` bounds (``t``, ``offset``) are applied by
    passing them through ``sample``'s domain: taps outside it are never asked.
    """
    reach = (len(lut) - 1) // 2
    lo = max(0, -((reach - d) >> frac_bits))
    hi = (d + reach) >> frac_bits
    return sum(lut[(m << frac_bits) - d + reach] * sample(m) for m in range(lo, hi + 1))


def trace_update(trace, increment, leak_param, spec: "CoreSpec"):
    """One step of an eligibility trace: ``sat_tb(decay(trace) + increment)``; elementwise.

    The trace leaks as the membrane does (:func:`decay` with the layer's leak
    parameter and the spec's leak mode), so the rule runs with either leak.
    """
    return sat(decay(trace, leak_param, spec.leak, spec.decay_bits) + increment, spec.trace_bits)


def error_shift(target: int, signal_bits: int) -> int:
    """Right shift that brings a per-step readout error ``u - target`` to ``signal_bits``."""
    return max(0, int(target).bit_length() + 1 - (signal_bits - 1))


def step_error(error, shift: int, signal_bits: int):
    """The per-step error's signal ``clamp(rshift_round(error, shift), +-top)``; elementwise.

    ``error = u_k - target [k = label]`` of a readout unit,
    ``top = 2^(signal_bits - 1) - 1``.
    """
    top = (1 << (signal_bits - 1)) - 1
    return clamp(rshift_round(error, shift), -top, top)


def feedback_weight(w, spec: "CoreSpec"):
    """The bits of a readout weight's learning copy the broadcast reads; elementwise.

    ``w >> (weight_frac_bits - feedback_frac_bits)``: the forward
    ``weight_bits`` and ``feedback_frac_bits`` bits of the fraction below them.
    """
    return w >> (spec.weight_frac_bits - spec.feedback_frac_bits)


def broadcast_signal(total, spec: "CoreSpec"):
    """The learning signal ``L = sat_s(rshift_round(total, weight_bits - 1 + feedback_frac_bits))``.

    ``total = sum_k e_k feedback_weight(w_out[k, i])``: the errors broadcast
    through the readout weights (exact); elementwise.
    """
    return sat(rshift_round(total, spec.weight_bits - 1 + spec.feedback_frac_bits), spec.signal_bits)


def parameter_step(accumulated, shift: int, draw: int | None = None):
    """The change of a parameter: ``rshift_round(acc, shift)``, or ``(acc + draw) >> shift``.

    ``draw`` is the stochastic-rounding offset (:meth:`Lfsr16.draw`), golden only; elementwise.
    """
    if draw is None:
        return rshift_round(accumulated, shift)
    return (accumulated + draw) >> shift


def delay_update(d, step, spec: "CoreSpec"):
    """``clamp(d - step, 0, delay_max)``: a delay after its update; elementwise."""
    return clamp(d - step, 0, spec.delay_max)


def weight_update(w, step, bits: int):
    """``sat_bits(w - step)``: a weight (or bias) learning copy after its update; elementwise."""
    return sat(w - step, bits)


class Lfsr16:
    """The 16-bit Galois LFSR (taps 0xB400) of stochastic rounding, one step per draw.

    ``draw(k)`` returns the low ``k`` bits after a step: the uniform offset
    of stochastic rounding ``(x + draw(k)) >> k`` (golden-model option).
    """

    def __init__(self, seed: int = 0xACE1):
        if not 0 < seed < (1 << 16):
            raise ValueError(f"LFSR seed must be in 1..65535, not {seed!r}")
        self.state = seed

    def step(self) -> int:
        lsb = self.state & 1
        self.state >>= 1
        if lsb:
            self.state ^= 0xB400
        return self.state

    def draw(self, k: int) -> int:
        return self.step() & ((1 << k) - 1)


# ---------------------------------------------------------------------------
# the specification
# ---------------------------------------------------------------------------

def known_fields(cls, data) -> dict:
    """``data`` as keyword arguments of the dataclass ``cls``; anything else is an error naming it."""
    if not isinstance(data, dict):
        raise ValueError(f"A {cls.__name__} must be a mapping of its fields, not {data!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} field(s) {unknown}; the fields are {sorted(known)}")
    return dict(data)


@dataclass(frozen=True)
class CoreSpec:
    """Widths of the core, for inference and learning, and its order of operations.

    The network: ``C`` input channels, optionally through integer delays
    (one per channel, *axonal*), -> ``N`` LIF neurons whose recurrent
    connections carry delays (one per presynaptic neuron, *axonal*, or one
    per connection, *synaptic*) -> ``K`` non-firing leaky readout units.
    Delays are stored in units of ``2^-delay_frac_bits`` steps and read as
    :func:`forward_delay`; weights and biases keep ``weight_frac_bits`` bits
    below their forward value (:func:`forward_value`); both fractions are 0
    for a network that does not learn. Per time step ``t``:

    1. **input**: ``x_c[t]`` events per channel (a count: each event adds
       its weight once), read ``round(d_c)`` steps late through an input
       delay; a recurrent spike of neuron ``j`` at step ``t'`` arrives at
       neuron ``i`` at ``t' + 1 + round(d_ij)``;
    2. **current** ``I_i[t] = sum_c w_in[i,c] x_c[t - d_c] + sum_j w_rec[i,j]
       s_j[t - 1 - d_ij]`` (forward weights), exact: the model compiler proves
       it fits ``acc_bits`` signed, so the order in which events arrive never
       matters;
    3. **neuron** (:func:`neuron_update`): ``h = sat_v(decay(v) + I + b)``,
       ``s = h >= theta``, reset soft or hard;
    4. **readout** (:func:`readout_update`): ``R_k = sum_j w_out[k,j] s_j[t]``
       (exact, ``acc_bits``), ``V_k = sat_r(decay_r(V_k) + R_k + b_k)``,
       ``score_k = sat_s(score_k + V_k)`` from step ``score_start`` on; the
       prediction is the first index of the largest score.

    When the core learns (the three-factor rule, per step; golden
    :class:`~delrec.golden.online_fixed.FixedOnlineNetwork`), each step that
    learns then continues:

    5. **surrogate** ``psi_i = surrogate(h_i, theta, psi_bits)``;
    6. **traces**, one per presynaptic channel with a learnable delay
       (inputs ``c``, then neurons ``j``): ``eps_p = trace_update(eps_p,
       D_p)`` with ``D_p = delay_derivative(d_p, lut, ...)`` over
       :func:`tap_range`'s taps of that channel's past events (a recurrent
       channel's taps one step further back);
    7. from step ``loss_start`` on, **signal**: ``e_k = step_error(V_k -
       target [k = label])`` and ``L_i = broadcast_signal(sum_k e_k
       feedback_weight(w_out[k, i]))``, with the readout weights before this
       step's update;
    8. **readout**: ``w_out[k, j] = weight_update(w_out[k, j],
       parameter_step(V_k - target [k = label], k_out))`` for every ``j``
       that fired, and ``b_out[k]`` likewise when it learns;
    9. **delays**: ``d_p = delay_update(d_p, parameter_step(S_p eps_p, k_d))``
       with the back-projection ``S_p = sum_i L_i psi_i w[i, p]`` over the
       forward weights of column ``p``.

    ``decay`` is :func:`decay` with the core's leak mode: a Q0.f multiply
    (one multiplier; needed for the short membrane time constants DelRec
    trains, ``tau = 1.05`` is ``alpha = 12/256``) or a shift (no
    multiplier; ``alpha >= 1/2`` only). Weights are ``weight_bits`` signed
    (plus their fraction), biases ``v_bits`` (hidden) and ``readout_bits``
    (readout) signed, the threshold ``1..2^(v_bits-1)-1``. Saturation
    happens only where ``sat`` is written; every other sum is exact by the
    compiler's checks.

    Parameters
    ----------
    weight_bits, v_bits, acc_bits, readout_bits, score_bits : int
        Forward weight, membrane, current, readout value and score widths.
    delay_bits : int
        Integer part of a delay: ``D = 2^delay_bits``, delays ``0..D-1``.
    leak : {"multiply", "shift"}
    decay_bits : int
        Fraction bits of a multiply leak.
    weight_frac_bits, delay_frac_bits : int
        Learning fractions of weights (and biases) and of delays.
    psi_bits, trace_bits, trace_frac_bits, lut_bits, signal_bits : int
        Surrogate half-width, trace width, weight-trace fraction, LUT entry
        and learning-signal widths.
    feedback_frac_bits : int
        Bits of the readout weights' fraction the broadcast reads (0: the
        forward bits only).
    count_bits : int
        Events per channel and step a learning core's input history keeps.
    """

    weight_bits: int = 8
    v_bits: int = 16
    acc_bits: int = 16
    delay_bits: int = 6
    leak: str = "multiply"
    decay_bits: int = 8
    readout_bits: int = 24
    score_bits: int = 32
    weight_frac_bits: int = 0
    delay_frac_bits: int = 0
    psi_bits: int = 7
    trace_bits: int = 16
    trace_frac_bits: int = 7
    lut_bits: int = 8
    signal_bits: int = 8
    feedback_frac_bits: int = 0
    count_bits: int = 4

    def __post_init__(self):
        for name in ("weight_bits", "v_bits", "acc_bits", "readout_bits", "score_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 48:
                raise ValueError(f"{name} must be an integer in 2..48, not {value!r}")
        for name, lo, hi in (("trace_bits", 2, 32), ("lut_bits", 2, 16), ("signal_bits", 2, 16),
                             ("count_bits", 1, 8), ("psi_bits", 0, 16), ("trace_frac_bits", 0, 16),
                             ("weight_frac_bits", 0, 16), ("delay_frac_bits", 0, 12),
                             ("decay_bits", 1, 16), ("delay_bits", 1, 12)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
        if self.leak not in LEAK_MODES:
            raise ValueError(f"Leak mode must be one of {LEAK_MODES}, not {self.leak!r}")
        if self.readout_bits > self.score_bits:
            raise ValueError(f"Score width {self.score_bits} must hold a readout value of "
                             f"{self.readout_bits} bits")
        if not 0 <= self.feedback_frac_bits <= self.weight_frac_bits:
            raise ValueError(f"Feedback fraction bits must be in 0..{self.weight_frac_bits} (the "
                             f"weights' fraction bits), not {self.feedback_frac_bits!r}")

    # -- derived sizes -----------------------------------------------------------------
    @property
    def depth(self) -> int:
        """``D``: integer delays ``0..D-1``."""
        return 1 << self.delay_bits

    @property
    def delay_max(self) -> int:
        """Largest stored delay, ``(D-1) 2^f``: it rounds to ``D - 1``."""
        return (self.depth - 1) << self.delay_frac_bits

    @property
    def stored_delay_bits(self) -> int:
        """Width of a stored delay: ``delay_bits + delay_frac_bits`` unsigned."""
        return self.delay_bits + self.delay_frac_bits

    @property
    def weight_store_bits(self) -> int:
        """Width of a stored weight: ``weight_bits + weight_frac_bits`` signed."""
        return self.weight_bits + self.weight_frac_bits

    @property
    def bias_store_bits(self) -> int:
        """Width of a stored hidden bias: ``v_bits + weight_frac_bits`` signed."""
        return self.v_bits + self.weight_frac_bits

    @property
    def readout_bias_store_bits(self) -> int:
        """Width of a stored readout bias: ``readout_bits + weight_frac_bits`` signed."""
        return self.readout_bits + self.weight_frac_bits

    @property
    def learns(self) -> bool:
        """Whether the spec keeps learning fractions (delays or weights)."""
        return bool(self.delay_frac_bits or self.weight_frac_bits)

    # -- leak parameters ---------------------------------------------------------------
    def leak_param_range(self) -> tuple[int, int]:
        """Allowed ``decay`` parameters: ``0..2^f`` (multiply) or ``0..v_bits`` (shift)."""
        return (0, 1 << self.decay_bits) if self.leak == "multiply" else (0, self.v_bits)

    def leak_param(self, alpha: float) -> int:
        """The leak parameter nearest to a float decay ``alpha`` in ``[0, 1]``."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Decay alpha must be in [0, 1], not {alpha!r}")
        if self.leak == "multiply":
            return int(math.floor(alpha * (1 << self.decay_bits) + 0.5))
        if alpha == 1.0:
            return self.v_bits
        if alpha < 0.25:
            return 0
        return min(self.v_bits, max(1, int(round(-math.log2(1.0 - alpha)))))

    def alpha(self, param: int) -> float:
        """The decay factor a leak parameter stands for."""
        if self.leak == "multiply":
            return param / (1 << self.decay_bits)
        return 1.0 - 2.0 ** -param if param else 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CoreSpec":
        """A spec from :meth:`to_dict`'s output; an unknown field is an error naming it."""
        return cls(**known_fields(cls, data))


@dataclass(frozen=True)
class LearningRates:
    """The learning-rate shifts ``k`` of the updates (registers of the learning unit).

    A parameter changes by ``parameter_step(acc, k)``: a rate of ``2^-k`` in
    the accumulators' units. ``stochastic`` rounds with :class:`Lfsr16`
    instead of half up (a golden-model option: the core rounds half up).
    """

    lr_weight_shift: int = 18
    lr_delay_shift: int = 26
    lr_readout_shift: int = 6
    stochastic: bool = False

    def __post_init__(self):
        for name in ("lr_weight_shift", "lr_delay_shift", "lr_readout_shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 63:
                raise ValueError(f"{name} must be an integer in 0..63, not {value!r}")
        if not isinstance(self.stochastic, bool):
            raise ValueError(f"stochastic must be true or false, not {self.stochastic!r}")

    def to_dict(self) -> dict:
        return asdict(self)
