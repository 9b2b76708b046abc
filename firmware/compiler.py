"""The model compiler: an integer network -> the memory writes of one core build.

A :class:`~delrec.build.CoreBuild` names a hardware configuration (what
:class:`delrec.hw.core.InferenceCore` is built from). :func:`compile_network` checks that a
:class:`~delrec.image.FixedNetwork` fits it -- every violation is an error
naming the value and the limit -- pads it to the build's sizes and returns a
:class:`CoreImage`: the element writes ``(target, addr, data)`` of the core's
``write`` stream, in the addressing of :class:`delrec.hw.ports.WriteTarget`.

Padding: extra input channels get zero weights; extra neurons zero weights
and zero bias, so they never fire (``theta >= 1``); extra classes zero
weights and the most negative readout bias, so they never win the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delrec.arith import error_shift, signed_range
from delrec.build import CoreBuild
from delrec.image import FixedNetwork, LearningRule
from delrec.hw.ports import (SHIFT_BITS, STEP_REGISTER_BITS, ConfigRegister, CoreGeometry, LearnFlag,
                             WriteTarget)

__all__ = ["CoreImage", "compile_network", "rule_writes", "label_writes"]


@dataclass
class CoreImage:
    """What the host writes to load a network: ``writes [W, 3]`` rows ``(target, addr, data)``.

    ``network`` is the padded network the core then runs (its golden trace
    equals the original network's on the original neurons and classes).
    """

    build: CoreBuild
    network: FixedNetwork
    writes: np.ndarray


def _pad(a: np.ndarray, shape: tuple, fill: int = 0) -> np.ndarray:
    out = np.full(shape, fill, dtype=np.int64)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out


def _mask(values: np.ndarray, bits: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)


def compile_network(net: FixedNetwork, build: CoreBuild, max_input: int = 1,
                    skip_zeros: bool = False) -> CoreImage:
    """Check that ``net`` fits ``build``; return its memory writes.

    ``max_input`` is the largest event count of one channel in one step
    (the accumulator proof depends on it). ``skip_zeros`` leaves out zero
    parameters (only valid right after power-up, when memories are zero).
    """
    if net.spec != build.spec:
        diff = {k: (v, getattr(build.spec, k)) for k, v in net.spec.to_dict().items()
                if getattr(build.spec, k) != v}
        raise ValueError("The network's arithmetic differs from the core build's: "
                         + ", ".join(f"{k} {a!r} (network) vs {b!r} (core)" for k, (a, b) in diff.items()))
    for what, value, limit in (("input channels", net.inputs, build.inputs),
                               ("neurons", net.neurons, build.neurons),
                               ("classes", net.classes, build.classes)):
        if value > limit:
            raise ValueError(f"The network has {value} {what}; this core build holds at most {limit}")
    net.check_accumulators(max_input)
    C, N, K = build.inputs, build.neurons, build.classes
    spec = build.spec
    if net.input_delays is not None and build.input_delays is None:
        raise ValueError("The network has input delays; this core build has none: build it with "
                         "input_delays='axonal'")
    if net.input_delay_kind == "synaptic":
        raise ValueError("The network's input delays are synaptic (one per connection); the core's "
                         "are axonal (one per input channel)")
    if build.input_delays is not None and max_input > (1 << spec.count_bits) - 1:
        raise ValueError(f"An input channel may carry {max_input} events in one step; the core's input "
                         f"history counts at most {(1 << spec.count_bits) - 1} (count_bits = "
                         f"{spec.count_bits})")
    if net.delay_kind == "synaptic" and build.delay_kind == "axonal":
        columns = net.delays
        same = (columns == columns[:1, :]).all(0)
        if not same.all():
            j = int(np.flatnonzero(~same)[0])
            raise ValueError(f"Presynaptic neuron {j} has different delays to its targets "
                             f"({sorted(set(columns[:, j].tolist()))[:5]}...): an axonal core needs "
                             f"one delay per presynaptic neuron; build the core with delay_kind='synaptic'")
        delays = _pad(columns[0], (N,))
    elif build.delay_kind == "axonal":
        delays = _pad(net.delays, (N,))
    else:
        delays = _pad(net.delay_matrix(), (N, N))
    input_delays = None if build.input_delays is None else \
        _pad(net.input_delays if net.input_delays is not None else np.zeros(0, np.int64), (C,))
    rmin = signed_range(spec.readout_bits)[0] << spec.weight_frac_bits
    padded = FixedNetwork(spec=net.spec, w_in=_pad(net.w_in, (N, C)), w_rec=_pad(net.w_rec, (N, N)),
                          delays=delays, bias=_pad(net.bias, (N,)), w_out=_pad(net.w_out, (K, N)),
                          bias_out=_pad(net.bias_out, (K,), fill=rmin), theta=net.theta, leak=net.leak,
                          readout_leak=net.readout_leak, reset=net.reset, meta=dict(net.meta),
                          input_delays=input_delays, score_start=net.score_start)
    geometry = CoreGeometry(build)
    bits = geometry.write_data_bits
    forward = padded.forward()
    rows = []

    def add(target: WriteTarget, values: np.ndarray, width: int):
        values = values.reshape(-1)
        addr = np.arange(values.size, dtype=np.int64)
        keep = values != 0 if skip_zeros else np.ones(values.size, bool)
        data = _mask(values[keep], width)  # two's complement in the element's width
        rows.append(np.stack([np.full(int(keep.sum()), target.value, np.int64), addr[keep], data], 1))

    # the input and recurrent weights and the hidden biases do not learn: the core keeps their
    # forward values; a core that does not learn keeps its delays as integers
    stored = "delays" if build.learns else None
    add(WriteTarget.W_IN, forward["w_in"].T, spec.weight_bits)        # c * N + i
    add(WriteTarget.W_REC, forward["w_rec"].T, spec.weight_bits)      # j * N + i
    recurrent = padded.delays if stored else forward["delays"]
    add(WriteTarget.DELAY, recurrent.T if recurrent.ndim == 2 else recurrent, geometry.delay_store_bits)
    if input_delays is not None:
        add(WriteTarget.INPUT_DELAY, padded.input_delays if stored else forward["input_delays"],
            geometry.delay_store_bits)
    add(WriteTarget.BIAS, forward["bias"], spec.v_bits)                # the hidden biases do not learn
    add(WriteTarget.W_OUT, padded.w_out.T, spec.weight_store_bits)      # j * K + k
    add(WriteTarget.BIAS_OUT, padded.bias_out, spec.readout_bias_store_bits)
    config = [(ConfigRegister.THETA, padded.theta), (ConfigRegister.LEAK, padded.leak),
              (ConfigRegister.READOUT_LEAK, padded.readout_leak),
              (ConfigRegister.RESET, int(padded.reset == "soft")),
              (ConfigRegister.SCORE_START, padded.score_start)]
    if padded.score_start >= 1 << STEP_REGISTER_BITS:
        raise ValueError(f"score_start {padded.score_start} does not fit the core's "
                         f"{STEP_REGISTER_BITS}-bit register")
    rows.append(np.array([[WriteTarget.CONFIG.value, int(r), int(v)] for r, v in config], np.int64))
    writes = np.concatenate(rows, 0)
    if (writes[:, 2] >> bits).any():  # pragma: no cover - guarded by the element widths
        raise AssertionError("a write's data exceeds the port width")
    return CoreImage(build=build, network=padded, writes=writes)


def rule_writes(rule: LearningRule, build: CoreBuild, learn: bool = True) -> np.ndarray:
    """``[W, 3]``: the learning unit's registers and table for ``rule`` (``learn``: the ``LEARN`` flag).

    Every value is checked against the build: the table's reach against
    ``max_reach``, the shifts against the registers, what learns against
    what the build has.
    """
    if not build.learns:
        raise ValueError("This core build has no learning unit: build it with learning='step'")
    if rule.spec != build.spec:
        raise ValueError("The rule's arithmetic differs from the core build's")
    if rule.reach > build.max_reach:
        raise ValueError(f"The table's reach {rule.reach} exceeds the core's max_reach {build.max_reach} "
                         f"(its table holds {build.lut_depth} entries, the rule's {rule.lut.size})")
    if rule.input_delays and build.input_delays is None:
        raise ValueError("The rule learns input delays; this core build has none")
    if rule.loss_start >= 1 << STEP_REGISTER_BITS:
        raise ValueError(f"loss_start {rule.loss_start} does not fit the core's {STEP_REGISTER_BITS}-bit "
                         f"register")
    flags = LearnFlag(0)
    if learn:
        flags |= LearnFlag.LEARN
    if rule.input_delays:
        flags |= LearnFlag.INPUT_DELAYS
    if rule.recurrent_delays:
        flags |= LearnFlag.RECURRENT_DELAYS
    if rule.readout_bias:
        flags |= LearnFlag.READOUT_BIAS
    R = ConfigRegister
    spec = build.spec
    config = [(R.LEARN, int(flags)), (R.REACH, rule.reach), (R.LOSS_START, rule.loss_start),
              (R.LR_DELAY_SHIFT, rule.lr_delay_shift), (R.LR_READOUT_SHIFT, rule.lr_readout_shift),
              (R.TARGET, rule.target & ((1 << spec.readout_bits) - 1)),
              (R.ERROR_SHIFT, error_shift(rule.target, spec.signal_bits))]
    if any(v >> SHIFT_BITS for r, v in config if r in (R.LR_DELAY_SHIFT, R.LR_READOUT_SHIFT, R.ERROR_SHIFT)):
        raise ValueError("A shift does not fit the core's 6-bit registers")  # pragma: no cover
    rows = [(WriteTarget.CONFIG.value, int(r), int(v)) for r, v in config]
    rows += [(WriteTarget.LUT.value, n, int(v) & ((1 << spec.lut_bits) - 1)) for n, v in enumerate(rule.lut)]
    return np.array(rows, dtype=np.int64)


def label_writes(build: CoreBuild, label: int) -> np.ndarray:
    """``[1, 3]``: the ``LABEL`` register for a sample (the per-step error's target class)."""
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) < build.classes:
        raise ValueError(f"Label {label!r} is outside the core's classes 0..{build.classes - 1}")
    return np.array([(WriteTarget.CONFIG.value, int(ConfigRegister.LABEL), int(label))], dtype=np.int64)
