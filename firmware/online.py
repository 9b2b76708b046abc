"""From a fixed-point online-learning network to the online core's writes and signal beats.

The network is :class:`delrec.golden.online_fixed.FixedOnlineNetwork` (any
object with its attributes: ``config``, ``spec``, ``w_in``, ``d_in``,
``bias``, ``w_out``, ``b_out``, ``lut``); the core is
:class:`delrec.hw.online_core.OnlineCore`. Everything here is plain numpy:
the same writes go to the simulated core and to a board.

What the core supports, checked by :func:`online_geometry` with a message
naming the setting: one feedforward LIF layer with a soft reset, input
delays (synaptic or axonal), a readout without leak, round-half-up updates,
and either a per-sample learning signal (applied at the end of the sample;
symmetric feedback when the core broadcasts the errors, random feedback is
the host's: send per-neuron signals) or a per-step signal formed on chip
from the sample's label (axonal delays and the readout learn, the input
weights stay, symmetric feedback, an update every step), which may also be
a recurrent layer with axonal recurrent delays.
"""

from __future__ import annotations

import numpy as np

from delrec.arith import CoreSpec, signed_range
from delrec.image import check_range
from delrec.hw.online_ports import (OnlineArithmetic, OnlineConfigRegister, OnlineFlag, OnlineGeometry,
                                    OnlineWriteTarget, SignalKind)

__all__ = ["online_geometry", "parameter_writes", "rule_writes", "signal_beats", "label_writes",
           "check_supported", "OnlineBuild"]


def check_supported(config, spec, rates=None) -> None:
    """Raise ``ValueError`` naming the first setting the online core cannot run."""
    problems = [
        (spec.leak != "shift", f"leak={spec.leak!r} (the core leaks by a shift)"),
        (config.recurrent and config.signal != "step",
         "recurrent=True with a per-sample signal (a recurrent layer learns per step)"),
        (config.recurrent and config.recurrent_delays != "axonal",
         f"recurrent_delays={config.recurrent_delays!r} (a recurrent layer's delays are axonal)"),
        (config.reset != "soft", f"reset={config.reset!r} (the core resets softly)"),
        (config.input_delays not in ("synaptic", "axonal"),
         f"input_delays={config.input_delays!r} (the core needs synaptic or axonal input delays)"),
        (config.signal not in ("sample", "step"), f"signal={config.signal!r} (per sample or per step)"),
        (config.signal == "step" and config.update_every != 1,
         f"update_every={config.update_every!r} with a per-step signal (the core updates every step: 1)"),
        (config.signal == "step" and config.input_delays != "axonal",
         f"input_delays={config.input_delays!r} with a per-step signal (axonal delays only)"),
        (config.signal == "step" and config.learn_weights,
         "learn_weights=True with a per-step signal (the input weights stay; delays and readout learn)"),
        (config.signal == "step" and config.feedback != "symmetric",
         f"feedback={config.feedback!r} with a per-step signal (the core broadcasts through the "
         "readout weights)"),
        (config.readout_decay != 0, f"readout_decay={config.readout_decay!r} (the readout has no leak)"),
        (config.forward != "hard", f"forward={config.forward!r} (the core reads integer delays)"),
        (rates is not None and rates.stochastic, "stochastic rounding (the core rounds half up)"),
    ]
    for bad, text in problems:
        if bad:
            raise ValueError(f"The online core cannot run this network: {text}")
    if config.max_delay > spec.depth - 1:
        raise ValueError(f"Maximum delay {config.max_delay} exceeds the core's D - 1 = {spec.depth - 1}")


def online_geometry(net, max_steps: int = 255, count_bits: int = 4,
                    max_reach: int | None = None) -> OnlineGeometry:
    """The core geometry that runs ``net`` (its sizes, spec and delay kind)."""
    c = net.config
    check_supported(c, net.spec, net.rates)
    if net.target != net.theta or net.readout_leak:
        raise ValueError("The online core cannot run this network: its per-step target is the "
                         "threshold and its readout has no leak")
    reach = (len(net.lut) - 1) // 2
    if max_reach is None:
        max_reach = reach
    if reach > max_reach:
        raise ValueError(f"LUT half-width {reach} exceeds the core's maximum reach {max_reach}")
    return OnlineGeometry(c.inputs, c.hidden, c.classes, OnlineArithmetic(net.spec, net.theta, net.leak),
                          c.input_delays, max_reach,
                          max_steps, count_bits, c.signal, c.recurrent)


def _array(value) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value,
                      dtype=np.int64)


def _checked(name: str, values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    check_range(name, values, lo, hi, "the core's range")
    return values


def parameter_writes(net, geometry: OnlineGeometry) -> np.ndarray:
    """``[W, 3]`` (target, address, data) loading every parameter of ``net``."""
    g, s, T = geometry, geometry.spec, OnlineWriteTarget
    C, N, K = g.inputs, g.neurons, g.classes
    w_in = _checked("Input weight", _array(net.w_in), *signed_range(g.weight_width))
    w_out = _checked("Readout weight", _array(net.w_out), *signed_range(g.weight_width))
    bias = _checked("Bias", _array(net.bias), *signed_range(g.bias_width))
    b_out = _checked("Readout bias", _array(net.b_out), *signed_range(g.bias_width))
    delays = _checked("Delay", _array(net.d_in), 0, s.delay_max)
    want = {"w_in": (N, C), "w_out": (K, N), "bias": (N,), "b_out": (K,),
            "d_in": (N, C) if g.delay_kind == "synaptic" else (C,), "w_rec": (N, N), "d_rec": (N,)}
    arrays = [("w_in", w_in), ("w_out", w_out), ("bias", bias), ("b_out", b_out), ("d_in", delays)]
    targets = [(T.W_IN, w_in), (T.BIAS, bias), (T.W_OUT, w_out), (T.B_OUT, b_out)]
    if g.recurrent:
        w_rec = _checked("Recurrent weight", _array(net.w_rec), *signed_range(g.weight_width))
        d_rec = _checked("Recurrent delay", _array(net.d_rec), 0, s.delay_max)
        arrays += [("w_rec", w_rec), ("d_rec", d_rec)]
        targets.append((T.W_REC, w_rec))
    for name, array in arrays:
        if array.shape != want[name]:
            raise ValueError(f"{name} has shape {list(array.shape)}, the core expects {list(want[name])}")
    if g.recurrent:   # neuron j's spikes are delayed channel C + j
        delays = np.concatenate([delays, d_rec])
    targets.insert(1, (T.DELAY, delays))
    rows = []
    for target, values in targets:
        flat = values.reshape(-1)
        rows.append(np.stack([np.full(flat.size, target.value), np.arange(flat.size), flat], 1))
    return _masked(np.concatenate(rows), g.write_data_bits)


def rule_writes(net, geometry: OnlineGeometry, learn: bool = True) -> np.ndarray:
    """``[W, 3]``: the LUT, its reach and the rule's registers (flags, loss start, shifts)."""
    g, s, T, R = geometry, net.spec, OnlineWriteTarget, OnlineConfigRegister
    rates = net.rates
    c = net.config
    lut = _checked("LUT", _array(net.lut), *signed_range(s.lut_bits))
    reach = (lut.size - 1) // 2
    if reach > g.max_reach:
        raise ValueError(f"LUT half-width {reach} exceeds the core's maximum reach {g.max_reach}")
    flags = 0
    if learn:
        flags |= OnlineFlag.LEARN
    if c.learn_weights:
        flags |= OnlineFlag.LEARN_WEIGHTS
    if c.learn_delays:
        flags |= OnlineFlag.LEARN_DELAYS
    if c.readout_bias:
        flags |= OnlineFlag.READOUT_BIAS
    shifts = {R.LR_WEIGHT_SHIFT: rates.lr_weight_shift, R.LR_DELAY_SHIFT: rates.lr_delay_shift,
              R.LR_READOUT_SHIFT: rates.lr_readout_shift}
    for reg, value in shifts.items():
        if not 0 <= value < (1 << g.shift_bits):
            raise ValueError(f"{reg.name} {value} outside the core's range 0..{(1 << g.shift_bits) - 1}")
    if c.loss_start > g.max_steps:
        raise ValueError(f"loss_start {c.loss_start} exceeds the core's max_steps {g.max_steps}")
    rows = [(T.CONFIG.value, R.FLAGS, int(flags)), (T.CONFIG.value, R.REACH, reach),
            (T.CONFIG.value, R.LOSS_START, c.loss_start)]
    rows += [(T.CONFIG.value, int(reg), int(value)) for reg, value in shifts.items()]
    rows += [(T.LUT.value, n, int(v)) for n, v in enumerate(lut)]
    return _masked(np.array(rows, dtype=np.int64), g.write_data_bits)


def signal_beats(geometry: OnlineGeometry, values, kind: SignalKind) -> np.ndarray:
    """``[B, 4]`` (kind, index, value, last) beats: every value, then the commit.

    ``values`` are the readout errors ``[K]`` (``SignalKind.ERROR``) or the
    learning signals ``[N]`` (``SignalKind.NEURON``), checked against the
    ``signal_bits`` range.
    """
    s = geometry.spec
    values = _checked("Learning signal", _array(values).reshape(-1), *signed_range(s.signal_bits))
    want = geometry.classes if kind == SignalKind.ERROR else geometry.neurons
    if values.size != want:
        raise ValueError(f"A {kind.name} signal has {want} values, not {values.size}")
    beats = [(kind.value, n, int(v) & ((1 << s.signal_bits) - 1), 0) for n, v in enumerate(values)]
    beats.append((kind.value, 0, 0, 1))
    return np.array(beats, dtype=np.int64)


def label_writes(geometry: OnlineGeometry, label: int) -> np.ndarray:
    """``[1, 3]``: the ``LABEL`` register for a sample (the per-step error's target class)."""
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or \
            not 0 <= int(label) < geometry.classes:
        raise ValueError(f"Label {label!r} is outside the core's classes 0..{geometry.classes - 1}")
    return np.array([(OnlineWriteTarget.CONFIG.value, int(OnlineConfigRegister.LABEL), int(label))],
                    dtype=np.int64)


def _masked(rows: np.ndarray, bits: int) -> np.ndarray:
    rows = rows.copy()
    rows[:, 2] &= (1 << bits) - 1
    return rows


class OnlineBuild:
    """One online-core configuration, for synthesis (:func:`delrec.hw.synth.synthesize`).

    Parameters are those of :class:`~delrec.hw.online_core.OnlineCore`.
    """

    def __init__(self, inputs: int, neurons: int, classes: int, spec=None, delay_kind: str = "synaptic",
                 max_reach: int = 768, max_steps: int = 255, count_bits: int = 4, learning: bool = True,
                 signal: str = "sample", recurrent: bool = False):
        self.spec = spec if spec is not None else OnlineArithmetic(CoreSpec(
            leak="shift", acc_bits=24, weight_frac_bits=8, delay_frac_bits=6), theta=128, leak_shift=1)
        self.geometry = OnlineGeometry(inputs, neurons, classes, self.spec, delay_kind, max_reach,
                                       max_steps, count_bits, signal, recurrent)
        self.learning = bool(learning)

    def make_core(self):
        from delrec.hw.online_core import OnlineCore

        g = self.geometry
        return OnlineCore(inputs=g.inputs, neurons=g.neurons, classes=g.classes, spec=g.spec,
                          delay_kind=g.delay_kind, max_reach=g.max_reach, max_steps=g.max_steps,
                          count_bits=g.count_bits, learning=self.learning, signal=g.signal,
                          recurrent=g.recurrent)

    def to_dict(self) -> dict:
        return dict(self.geometry.to_dict(), learning=self.learning, core="online")
