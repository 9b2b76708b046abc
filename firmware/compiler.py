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

from delrec.arith import signed_range
from delrec.build import CoreBuild
from delrec.image import FixedNetwork
from delrec.hw.ports import ConfigRegister, CoreGeometry, WriteTarget

__all__ = ["CoreImage", "compile_network"]


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
    rmin = signed_range(build.spec.readout_bits)[0]
    padded = FixedNetwork(spec=net.spec, w_in=_pad(net.w_in, (N, C)), w_rec=_pad(net.w_rec, (N, N)),
                          delays=delays, bias=_pad(net.bias, (N,)), w_out=_pad(net.w_out, (K, N)),
                          bias_out=_pad(net.bias_out, (K,), fill=rmin), theta=net.theta, leak=net.leak,
                          readout_leak=net.readout_leak, reset=net.reset, meta=dict(net.meta))
    geometry = CoreGeometry(build)
    bits = geometry.write_data_bits
    spec = build.spec
    rows = []

    def add(target: WriteTarget, values: np.ndarray, width: int):
        values = values.reshape(-1)
        addr = np.arange(values.size, dtype=np.int64)
        keep = values != 0 if skip_zeros else np.ones(values.size, bool)
        data = _mask(values[keep], width)  # two's complement in the element's width
        rows.append(np.stack([np.full(int(keep.sum()), target.value, np.int64), addr[keep], data], 1))

    add(WriteTarget.W_IN, padded.w_in.T, spec.weight_bits)        # c * N + i
    add(WriteTarget.W_REC, padded.w_rec.T, spec.weight_bits)      # j * N + i
    add(WriteTarget.DELAY, padded.delays.T if padded.delays.ndim == 2 else padded.delays, spec.delay_bits)
    add(WriteTarget.BIAS, padded.bias, spec.v_bits)
    add(WriteTarget.W_OUT, padded.w_out.T, spec.weight_bits)      # j * K + k
    add(WriteTarget.BIAS_OUT, padded.bias_out, spec.readout_bits)
    config = [(ConfigRegister.THETA, padded.theta), (ConfigRegister.LEAK, padded.leak),
              (ConfigRegister.READOUT_LEAK, padded.readout_leak),
              (ConfigRegister.RESET, int(padded.reset == "soft"))]
    rows.append(np.array([[WriteTarget.CONFIG.value, int(r), int(v)] for r, v in config], np.int64))
    writes = np.concatenate(rows, 0)
    if (writes[:, 2] >> bits).any():  # pragma: no cover - guarded by the element widths
        raise AssertionError("a write's data exceeds the port width")
    return CoreImage(build=build, network=padded, writes=writes)
