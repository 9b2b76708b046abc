"""The integer network the inference core runs: one container, checked once.

A :class:`FixedNetwork` is the meeting point of the three paths: the
quantizer (:mod:`delrec.golden.fixed`) produces it from a float checkpoint,
the fixed-point golden model runs it, and the model compiler
(:mod:`delrec.firmware`) turns it into memory images of a core build. Its
arithmetic is :class:`delrec.arith.CoreSpec`. Plain numpy, no torch: the
simulator and the firmware load it without importing the training stack.

Shapes: ``w_in [N, C]``, ``w_rec [N, N]`` (``[post, pre]``), ``delays [N]``
(axonal, per presynaptic neuron) or ``[N, N]`` (synaptic, ``[post, pre]``),
``bias [N]``, ``w_out [K, N]``, ``bias_out [K]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .arith import RESET_MODES, CoreSpec, signed_range

__all__ = ["FixedNetwork", "DELAY_KINDS", "check_range"]

DELAY_KINDS = ("axonal", "synaptic")
IMAGE_FORMAT = "delrec-fixed-network-v1"
_ARRAYS = ("w_in", "w_rec", "delays", "bias", "w_out", "bias_out")


def check_range(name: str, values: np.ndarray, lo: int, hi: int, what: str) -> None:
    """Raise ``ValueError`` naming the first of ``values`` outside ``[lo, hi]``, its index and ``what``."""
    if values.size == 0:
        return
    bad = np.argwhere((values < lo) | (values > hi))
    if len(bad):
        index = tuple(int(i) for i in bad[0])
        raise ValueError(f"{name}{list(index)} = {int(values[index])} is outside {what} "
                         f"[{lo}, {hi}] ({len(bad)} value(s) out of range)")


@dataclass
class FixedNetwork:
    """An integer ``C -> N (recurrent, delayed) -> K`` LIF network.

    Parameters
    ----------
    spec : CoreSpec
        Widths and leak mode.
    w_in, w_rec, w_out : int arrays ``[N, C]``, ``[N, N]``, ``[K, N]``
        Signed ``weight_bits`` weights; ``w_rec`` all zero for a network
        without recurrence.
    delays : int array ``[N]`` or ``[N, N]``
        Recurrent delays in ``0..D-1``: a spike of ``j`` at ``t`` reaches
        ``i`` at ``t + 1 + d``.
    bias, bias_out : int arrays ``[N]``, ``[K]``
        Signed ``v_bits`` and ``readout_bits``.
    theta : int
        Threshold, ``1..2^(v_bits-1)-1``.
    leak, readout_leak : int
        Leak parameters of :func:`delrec.arith.decay`.
    reset : {"hard", "soft"}
    meta : dict
        Free-form provenance (quantization scales, source checkpoint).
    """

    spec: CoreSpec
    w_in: np.ndarray
    w_rec: np.ndarray
    delays: np.ndarray
    bias: np.ndarray
    w_out: np.ndarray
    bias_out: np.ndarray
    theta: int
    leak: int
    readout_leak: int
    reset: str = "hard"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in _ARRAYS:
            value = np.asarray(getattr(self, name))
            if value.dtype.kind not in "iub":
                raise TypeError(f"{name} must hold integers, not {value.dtype}")
            setattr(self, name, value.astype(np.int64))
        self.theta, self.leak, self.readout_leak = int(self.theta), int(self.leak), int(self.readout_leak)
        self.validate()

    # -- shape -------------------------------------------------------------
    @property
    def inputs(self) -> int:
        return self.w_in.shape[1]

    @property
    def neurons(self) -> int:
        return self.w_in.shape[0]

    @property
    def classes(self) -> int:
        return self.w_out.shape[0]

    @property
    def delay_kind(self) -> str:
        return "axonal" if self.delays.ndim == 1 else "synaptic"

    def delay_matrix(self) -> np.ndarray:
        """Delays per connection ``[post, pre]`` whatever the kind."""
        if self.delay_kind == "axonal":
            return np.broadcast_to(self.delays[None, :], (self.neurons, self.neurons)).copy()
        return self.delays.copy()

    # -- checks ------------------------------------------------------------
    def validate(self, max_input: int = 1) -> None:
        """Raise ``ValueError`` naming the first value outside its limit.

        ``max_input`` is the largest number of events one channel may carry
        in one step; it bounds the input current the compiler proves exact.
        """
        spec = self.spec
        if self.w_in.ndim != 2:
            raise ValueError(f"w_in must be [N, C], not shape {self.w_in.shape}")
        N, C = self.w_in.shape
        K = self.w_out.shape[0] if self.w_out.ndim == 2 else -1
        expected = dict(w_rec=(N, N), bias=(N,), w_out=(K, N), bias_out=(K,))
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape {shape} for {N} neurons and {K} classes, "
                                 f"not {getattr(self, name).shape}")
        if self.delays.shape not in ((N,), (N, N)):
            raise ValueError(f"delays must have shape ({N},) (axonal) or ({N}, {N}) (synaptic), "
                             f"not {self.delays.shape}")
        if N < 1 or C < 1 or K < 1:
            raise ValueError(f"Need at least one input, neuron and class, not C={C}, N={N}, K={K}")
        lo, hi = signed_range(spec.weight_bits)
        for name in ("w_in", "w_rec", "w_out"):
            check_range(name, getattr(self, name), lo, hi, f"the {spec.weight_bits}-bit weight range")
        check_range("delays", self.delays, 0, spec.depth - 1, f"the delay range of D = {spec.depth}")
        check_range("bias", self.bias, *signed_range(spec.v_bits), f"the {spec.v_bits}-bit bias range")
        check_range("bias_out", self.bias_out, *signed_range(spec.readout_bits),
                     f"the {spec.readout_bits}-bit readout bias range")
        vmax = signed_range(spec.v_bits)[1]
        if not 1 <= self.theta <= vmax:
            raise ValueError(f"Threshold {self.theta} is outside [1, {vmax}] for a "
                             f"{spec.v_bits}-bit membrane")
        plo, phi = spec.leak_param_range()
        for name in ("leak", "readout_leak"):
            value = getattr(self, name)
            if not plo <= value <= phi:
                raise ValueError(f"{name} = {value} is outside [{plo}, {phi}] for the "
                                 f"{spec.leak!r} leak with {spec.decay_bits} decay bits")
        if self.reset not in RESET_MODES:
            raise ValueError(f"Reset must be one of {RESET_MODES}, not {self.reset!r}")
        self.check_accumulators(max_input)

    def current_bounds(self, max_input: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Worst-case ``|I_i|`` per hidden neuron and ``|R_k|`` per readout unit."""
        hidden = np.abs(self.w_in).sum(1) * max_input + np.abs(self.w_rec).sum(1)
        readout = np.abs(self.w_out).sum(1)
        return hidden, readout

    def check_accumulators(self, max_input: int = 1) -> None:
        """The current sums are exact in ``acc_bits``: else name the neuron and its bound."""
        hi = signed_range(self.spec.acc_bits)[1]
        hidden, readout = self.current_bounds(max_input)
        for name, bound in (("hidden neuron", hidden), ("readout unit", readout)):
            worst = int(np.argmax(bound))
            if bound[worst] > hi:
                raise ValueError(f"{name} {worst} can receive a current of {int(bound[worst])} "
                                 f"(sum of |weights| x events), more than the {self.spec.acc_bits}-bit "
                                 f"accumulator holds ({hi}); widen acc_bits or lower the weights")

    # -- files -------------------------------------------------------------
    def save(self, path) -> Path:
        """Write an ``.npz`` (arrays) with the scalars and spec as JSON inside."""
        path = Path(path)
        header = dict(format=IMAGE_FORMAT, spec=self.spec.to_dict(), theta=self.theta,
                      leak=self.leak, readout_leak=self.readout_leak, reset=self.reset,
                      meta=self.meta)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, header=np.array(json.dumps(header)), **{n: getattr(self, n) for n in _ARRAYS})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "FixedNetwork":
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)
            header = json.loads(str(data["header"]))
            arrays = {n: data[n] for n in _ARRAYS}
        except FileNotFoundError:
            raise
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same error
            raise ValueError(f"{path} is not a delrec fixed-network image: {err}") from err
        if header.get("format") != IMAGE_FORMAT:
            raise ValueError(f"{path} has format {header.get('format')!r}, expected {IMAGE_FORMAT!r}")
        spec = CoreSpec(**header["spec"])
        return cls(spec=spec, theta=header["theta"], leak=header["leak"],
                   readout_leak=header["readout_leak"], reset=header["reset"],
                   meta=header.get("meta", {}), **arrays)

    def equals(self, other: "FixedNetwork") -> bool:
        return (self.spec == other.spec and self.reset == other.reset
                and (self.theta, self.leak, self.readout_leak) == (other.theta, other.leak, other.readout_leak)
                and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in _ARRAYS))

    @classmethod
    def random(cls, spec: CoreSpec, inputs: int, neurons: int, classes: int, rng: np.random.Generator,
               delay_kind: str = "axonal", weight_scale: float = 0.5, reset: str = "hard",
               recurrent: bool = True, max_input: int = 1) -> "FixedNetwork":
        """A random network for tests: weights within ``weight_scale`` of full range,
        delays uniform in ``0..D-1`` (both ends forced to occur when there is room),
        scaled down if needed so the accumulators stay exact."""
        if delay_kind not in DELAY_KINDS:
            raise ValueError(f"Delay kind must be one of {DELAY_KINDS}, not {delay_kind!r}")
        wlo, whi = signed_range(spec.weight_bits)
        top = max(1, int(whi * weight_scale))

        def weights(shape):
            return rng.integers(-top, top + 1, size=shape)

        w_in, w_rec, w_out = weights((neurons, inputs)), weights((neurons, neurons)), weights((classes, neurons))
        if not recurrent:
            w_rec[:] = 0
        acc = signed_range(spec.acc_bits)[1]
        # keep |I| within the accumulator: shrink the rows that could overflow
        hidden = np.abs(w_in).sum(1) * max_input + np.abs(w_rec).sum(1)
        factor = np.maximum(1.0, hidden / acc)
        w_in = np.trunc(w_in / factor[:, None]).astype(np.int64)
        w_rec = np.trunc(w_rec / factor[:, None]).astype(np.int64)
        readout = np.abs(w_out).sum(1)
        w_out = np.trunc(w_out / np.maximum(1.0, readout / acc)[:, None]).astype(np.int64)
        shape = (neurons,) if delay_kind == "axonal" else (neurons, neurons)
        delays = rng.integers(0, spec.depth, size=shape)
        flat = delays.reshape(-1)
        if flat.size >= 2:
            flat[rng.choice(flat.size, 2, replace=False)] = [0, spec.depth - 1]
        vhi = signed_range(spec.v_bits)[1]
        theta = int(rng.integers(max(1, top // 4), max(2, 2 * top) + 1))
        theta = min(theta, vhi)
        bias = rng.integers(-top // 2, top // 2 + 1, size=neurons)
        bias_out = rng.integers(-top, top + 1, size=classes)
        plo, phi = spec.leak_param_range()
        return cls(spec=spec, w_in=w_in, w_rec=w_rec, delays=delays, bias=bias, w_out=w_out,
                   bias_out=bias_out, theta=theta, leak=int(rng.integers(plo, phi + 1)),
                   readout_leak=int(rng.integers(plo, phi + 1)), reset=reset)
