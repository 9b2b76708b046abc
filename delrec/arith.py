"""The arithmetic specification of the chip: widths, rounding, order of operations.

This module is the one place the fixed-point golden model
(:mod:`delrec.golden.online_fixed`) and the gateware (:mod:`delrec.hw`) are
written from. It is plain Python (no torch, no Amaranth), so both sides import
it. Every integer operation of the chip is one of the functions below, and the
order in which they are applied is the numbered list in :class:`FixedSpec`.

Notation: ``sat_b(x)`` clamps to the signed range of ``b`` bits
``[-2^(b-1), 2^(b-1) - 1]``; ``x >> k`` is an arithmetic shift (floor);
``rshift_round(x, k) = (x + 2^(k-1)) >> k`` rounds half up (``k = 0``: ``x``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["FixedSpec", "CoreSpec", "sat", "rshift_round", "signed_range", "leak", "decay",
           "neuron_update", "readout_update",
           "gaussian_derivative_lut", "Lfsr16"]


def signed_range(bits: int) -> tuple[int, int]:
    """``(min, max)`` of a two's-complement integer of ``bits`` bits."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def sat(x: int, bits: int) -> int:
    """Clamp ``x`` to the signed range of ``bits`` bits."""
    lo, hi = signed_range(bits)
    return lo if x < lo else hi if x > hi else x


def rshift_round(x: int, k: int) -> int:
    """``x / 2^k`` rounded half up (toward +infinity on ties); exact for ``k = 0``."""
    return x if k == 0 else (x + (1 << (k - 1))) >> k


def leak(x: int, shift: int) -> int:
    """The shift leak ``x - (x >> shift)``: multiplies by ``alpha = 1 - 2^-shift``, floor."""
    return x - (x >> shift)


def gaussian_derivative_lut(sigma: float, radius: float, frac_bits: int, out_bits: int) -> list[int]:
    """Samples of the delay-derivative kernel ``K(x) = x / sigma^2 G(x)`` for the chip.

    ``x = m - d`` (lag minus delay) in units of ``2^-frac_bits`` steps, for
    ``x`` from ``-R`` to ``R`` with ``R = ceil(radius * sigma * 2^frac_bits)``;
    entry ``x + R`` holds ``round(K(x) / K_max * (2^(out_bits-1) - 1))``. The
    table is odd: ``lut[R + x] = -lut[R - x]``.
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


class Lfsr16:
    """The chip's 16-bit Galois LFSR (taps 0xB400), one step per draw.

    ``draw(k)`` returns the low ``k`` bits after a step: the uniform offset
    of stochastic rounding ``(x + draw(k)) >> k``.
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


@dataclass(frozen=True)
class FixedSpec:
    """Widths and shifts of the fixed-point LIF layer and its three-factor rule.

    Order of operations per time step (every neuron ``i``; ``j`` presynaptic):

    1. delayed reads: presynaptic spike ``j`` arrives at neuron ``i`` when
       its age (lag) equals ``1[recurrent] + round(d_ij)`` with
       ``round(d) = (d + 2^(delay_frac_bits-1)) >> delay_frac_bits``;
    2. current ``I_i = sum_j w_ij x_ij + bias_i`` in a wide accumulator
       (never overflows: ``weight_bits + log2(fan-in) + 2 < 32``);
    3. charge ``h_i = sat_v(leak(v_i) + I_i)``, spike ``s_i = h_i >= theta``,
       reset soft ``v = sat_v(h - theta s)`` or hard ``v = h (1 - s)``;
    4. surrogate ``psi_i = max(0, 2^psi_bits - |h_i - theta|)``
       (a triangle of half-width ``2^psi_bits`` membrane units);
    5. traces (per presynaptic neuron with a soft reset and axonal or no
       delays; else per synapse), ``trace_bits`` saturating:
       ``eps_w = sat(leak_a(eps_w) + (x << trace_frac_bits))`` and
       ``eps_d = sat(leak_a(eps_d) + D)`` with ``D = sum_m lut[m*2^f - d] x[t-m]``
       (times ``w_ij >> (weight_bits - 1)`` ... see the golden model) where
       ``leak_a`` is the membrane leak, gated by ``1 - s_i[t-1]`` for a hard reset;
    6. eligibility sums / accumulators (64-bit in the model; the chip's
       widths are checked against the model's maxima);
    7. updates at the end of the sample (or every ``update_every`` steps):
       ``param -= round_k(L * E)`` with ``k = lr_*_shift`` and round half up,
       or stochastic rounding with :class:`Lfsr16`; delays clipped to
       ``[0, (D-1) 2^f]``, weights saturated to their learning width.

    The learning signal broadcast through the readout (or feedback) weights
    ``L = sat(round(sum_k err_k (w_k >> (weight_frac_bits - feedback_frac_bits))
    >> (weight_bits - 1 + feedback_frac_bits)))`` reads ``feedback_frac_bits``
    of the learning copy's fraction below the forward bits (0: the forward
    weights only; the same scale either way).
    """

    weight_bits: int = 8
    weight_frac_bits: int = 8
    v_bits: int = 16
    theta: int = 128
    leak_shift: int = 1
    delay_int_bits: int = 6
    delay_frac_bits: int = 6
    psi_bits: int = 7
    trace_bits: int = 16
    trace_frac_bits: int = 7
    lut_bits: int = 8
    signal_bits: int = 8
    feedback_frac_bits: int = 0
    lr_weight_shift: int = 18
    lr_delay_shift: int = 26
    lr_readout_shift: int = 6
    stochastic: bool = False

    def __post_init__(self):
        for name in ("weight_bits", "v_bits", "trace_bits", "lut_bits", "signal_bits"):
            value = getattr(self, name)
            if not 2 <= value <= 32:
                raise ValueError(f"{name} must be in 2..32, not {value!r}")
        if not 1 <= self.delay_int_bits <= 12:
            raise ValueError(f"Delay integer bits must be in 1..12, not {self.delay_int_bits!r}")
        if not 0 <= self.delay_frac_bits <= 12:
            raise ValueError(f"Delay fractional bits must be in 0..12, not {self.delay_frac_bits!r}")
        lo, hi = signed_range(self.v_bits)
        if not 0 < self.theta <= hi:
            raise ValueError(f"Threshold must be in 1..{hi} for a {self.v_bits}-bit membrane, "
                             f"not {self.theta!r}")
        if not 1 <= self.leak_shift <= self.v_bits:
            raise ValueError(f"Leak shift must be in 1..{self.v_bits}, not {self.leak_shift!r}")
        if not 0 <= self.feedback_frac_bits <= self.weight_frac_bits:
            raise ValueError(f"Feedback fraction bits must be in 0..{self.weight_frac_bits} (the "
                             f"weights' fraction bits), not {self.feedback_frac_bits!r}")

    @property
    def depth(self) -> int:
        """``D``: integer delays ``0..D-1``."""
        return 1 << self.delay_int_bits

    @property
    def delay_max(self) -> int:
        """Largest stored delay, ``(D-1) 2^f``: it rounds to ``D - 1``."""
        return (self.depth - 1) << self.delay_frac_bits

    @property
    def decay(self) -> float:
        return 1.0 - 2.0 ** -self.leak_shift

    @property
    def step_error_shift(self) -> int:
        """Right shift that brings a per-step readout error ``u - theta`` to ``signal_bits``.

        The per-step learning signal's error is
        ``clamp(round((u_k - theta [k = label]) >> step_error_shift), +-top)``
        with ``top = 2^(signal_bits - 1) - 1``.
        """
        return max(0, self.theta.bit_length() + 1 - (self.signal_bits - 1))

    def round_delay(self, d: int) -> int:
        return rshift_round(d, self.delay_frac_bits)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------
# Inference core: the LIF network the RTL core runs (golden: golden/fixed.py)
# ---------------------------------------------------------------------------

LEAK_MODES = ("multiply", "shift")
RESET_MODES = ("hard", "soft")


def decay(x: int, param: int, mode: str, frac_bits: int) -> int:
    """The membrane leak of the core, floor rounding (also on int64 tensors: ``*``, ``>>``).

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


def neuron_update(v: int, current: int, bias: int, theta: int, leak_param: int,
                  reset: str, spec: "CoreSpec") -> tuple[int, int, int]:
    """One neuron of the core, one step: ``(h, spike, v_next)``.

    ``h = sat_v(decay(v) + current + bias)``; ``spike = h >= theta``;
    ``v_next = h - theta`` (soft) or ``0`` (hard) if it spiked, else ``h``.
    ``h - theta`` cannot overflow because ``h >= theta > 0``.
    """
    h = sat(decay(v, leak_param, spec.leak, spec.decay_bits) + current + bias, spec.v_bits)
    spike = int(h >= theta)
    if spike:
        return h, 1, (h - theta if reset == "soft" else 0)
    return h, 0, h


def readout_update(v: int, current: int, bias: int, leak_param: int, score: int,
                   spec: "CoreSpec") -> tuple[int, int]:
    """One readout unit, one step: ``(v_next, score_next)``.

    ``v_next = sat_r(decay(v) + current + bias)``, ``score_next = sat_s(score + v_next)``.
    """
    v = sat(decay(v, leak_param, spec.leak, spec.decay_bits) + current + bias, spec.readout_bits)
    return v, sat(score + v, spec.score_bits)


@dataclass(frozen=True)
class CoreSpec:
    """Widths of the inference core and its order of operations.

    The network: ``C`` input channels -> ``N`` recurrent LIF neurons whose
    recurrent connections carry integer delays ``d`` in ``0..D-1`` (one per
    presynaptic neuron, *axonal*, or one per connection, *synaptic*) -> ``K``
    non-firing leaky readout units. Per time step ``t``:

    1. **input**: ``x_c[t]`` events per channel (a count: each event adds
       its weight once); a recurrent spike of neuron ``j`` at step ``t'``
       arrives at neuron ``i`` at ``t' + 1 + d_ij``;
    2. **current** ``I_i[t] = sum_c w_in[i,c] x_c[t] + sum_j w_rec[i,j]
       s_j[t - 1 - d_ij]``, exact: the model compiler proves it fits
       ``acc_bits`` signed (``sum_c |w_in[i,c]| max_x + sum_j |w_rec[i,j]|``),
       so the order in which events arrive never matters;
    3. **neuron** (:func:`neuron_update`): ``h = sat_v(decay(v) + I + b)``,
       ``s = h >= theta``, reset soft or hard;
    4. **readout** (:func:`readout_update`): ``R_k = sum_j w_out[k,j] s_j[t]``
       (exact, ``acc_bits``), ``V_k = sat_r(decay_r(V_k) + R_k + b_k)``,
       ``score_k = sat_s(score_k + V_k)``; the prediction is the first index
       of the largest score.

    ``decay`` is :func:`decay` with the core's leak mode: a Q0.f multiply
    (one multiplier; needed for the short membrane time constants DelRec
    trains, ``tau = 1.05`` is ``alpha = 12/256``) or a shift (no
    multiplier; ``alpha >= 1/2`` only). Weights are ``weight_bits`` signed,
    biases ``v_bits`` (hidden) and ``readout_bits`` (readout) signed, the
    threshold ``1..2^(v_bits-1)-1``. Saturation happens only where ``sat`` is
    written; every other sum is exact by the compiler's checks.
    """

    weight_bits: int = 8
    v_bits: int = 16
    acc_bits: int = 16
    delay_bits: int = 6
    leak: str = "multiply"
    decay_bits: int = 8
    readout_bits: int = 24
    score_bits: int = 32

    def __post_init__(self):
        for name in ("weight_bits", "v_bits", "acc_bits", "readout_bits", "score_bits"):
            value = getattr(self, name)
            if not 2 <= value <= 48:
                raise ValueError(f"{name} must be in 2..48, not {value!r}")
        if not 1 <= self.delay_bits <= 12:
            raise ValueError(f"Delay bits must be in 1..12, not {self.delay_bits!r}")
        if self.leak not in LEAK_MODES:
            raise ValueError(f"Leak mode must be one of {LEAK_MODES}, not {self.leak!r}")
        if not 1 <= self.decay_bits <= 16:
            raise ValueError(f"Decay bits must be in 1..16, not {self.decay_bits!r}")
        if self.readout_bits > self.score_bits:
            raise ValueError(f"Score width {self.score_bits} must hold a readout value of "
                             f"{self.readout_bits} bits")

    @property
    def depth(self) -> int:
        """``D``: integer delays ``0..D-1``."""
        return 1 << self.delay_bits

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
