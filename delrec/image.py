"""The integer network the inference core runs: one container, checked once.

A :class:`FixedNetwork` is the meeting point of the three paths: the
quantizer (:mod:`delrec.golden.fixed`) produces it from a float checkpoint,
the fixed-point golden models run it (and the learning rule changes it), and
the model compiler (:mod:`delrec.firmware`) turns it into memory images of a
core build. Its arithmetic is :class:`delrec.arith.CoreSpec`. Plain numpy, no
torch: the simulator and the firmware load it without importing the training
stack.

Shapes: ``w_in [N, C]``, ``w_rec [N, N]`` (``[post, pre]``), ``delays [N]``
(axonal, per presynaptic neuron) or ``[N, N]`` (synaptic, ``[post, pre]``),
``input_delays`` none, ``[C]`` (axonal, per channel) or ``[N, C]``
(synaptic), ``bias [N]``, ``w_out [K, N]``, ``bias_out [K]``.

Stored formats: weights and biases are learning copies with
``spec.weight_frac_bits`` bits below their forward value
(:func:`delrec.arith.forward_value`), delays are in units of
``2^-spec.delay_frac_bits`` steps (:func:`delrec.arith.forward_delay`);
both fractions are 0 for a network that does not learn, where every value
is what the forward pass uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .arith import DELAY_KINDS, RESET_MODES, CoreSpec, forward_delay, forward_value, signed_range

__all__ = ["FixedNetwork", "LearningRule", "check_range"]

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
        Widths, leak mode and learning fractions.
    w_in, w_rec, w_out : int arrays ``[N, C]``, ``[N, N]``, ``[K, N]``
        Signed weights (learning copies of ``weight_bits + weight_frac_bits``
        bits); ``w_rec`` all zero for a network without recurrence.
    delays : int array ``[N]`` or ``[N, N]``
        Recurrent delays in ``0..(D-1) 2^f``: a spike of ``j`` at ``t`` reaches
        ``i`` at ``t + 1 + round(d)``.
    bias, bias_out : int arrays ``[N]``, ``[K]``
        Signed, ``v_bits`` and ``readout_bits`` (plus ``weight_frac_bits``).
    theta : int
        Threshold, ``1..2^(v_bits-1)-1``.
    leak, readout_leak : int
        Leak parameters of :func:`delrec.arith.decay`.
    reset : {"hard", "soft"}
    meta : dict
        Free-form provenance (quantization scales, source checkpoint).
    input_delays : int array ``[C]`` or ``[N, C]``, optional
        Input delays in ``0..(D-1) 2^f``: an event of channel ``c`` at ``t``
        reaches neuron ``i`` at ``t + round(d)``; ``None``: at ``t``.
    score_start : int
        First step whose readout values the scores sum.
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
    input_delays: np.ndarray | None = None
    score_start: int = 0

    def __post_init__(self):
        if not isinstance(self.spec, CoreSpec):
            raise TypeError(f"spec must be a delrec.arith.CoreSpec, not {self.spec!r}")
        for name in _ARRAYS + ("input_delays",):
            value = getattr(self, name)
            if value is None and name == "input_delays":
                continue
            value = np.asarray(value)
            if value.dtype.kind not in "iub":
                raise TypeError(f"{name} must hold integers, not {value.dtype}")
            setattr(self, name, value.astype(np.int64))
        self.theta, self.leak, self.readout_leak = int(self.theta), int(self.leak), int(self.readout_leak)
        if isinstance(self.score_start, bool) or not isinstance(self.score_start, (int, np.integer)) \
                or self.score_start < 0:
            raise ValueError(f"score_start must be a non-negative integer, not {self.score_start!r}")
        self.score_start = int(self.score_start)
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
        """Kind of the recurrent delays."""
        return "axonal" if self.delays.ndim == 1 else "synaptic"

    @property
    def input_delay_kind(self) -> str | None:
        """Kind of the input delays, ``None`` without them."""
        if self.input_delays is None:
            return None
        return "axonal" if self.input_delays.ndim == 1 else "synaptic"

    @property
    def recurrent(self) -> bool:
        """Whether any recurrent weight is non-zero."""
        return bool(self.w_rec.any())

    def delay_matrix(self) -> np.ndarray:
        """Stored recurrent delays per connection ``[post, pre]`` whatever the kind."""
        if self.delay_kind == "axonal":
            return np.broadcast_to(self.delays[None, :], (self.neurons, self.neurons)).copy()
        return self.delays.copy()

    def forward(self) -> dict:
        """The values the forward pass uses: weights and biases without their learning
        fractions, integer delays (:func:`~delrec.arith.forward_value`,
        :func:`~delrec.arith.forward_delay`); ``input_delays`` is ``None`` without them."""
        wf, f = self.spec.weight_frac_bits, self.spec.delay_frac_bits
        out = {n: forward_value(getattr(self, n), wf) for n in ("w_in", "w_rec", "w_out", "bias", "bias_out")}
        out["delays"] = forward_delay(self.delays, f)
        out["input_delays"] = None if self.input_delays is None else forward_delay(self.input_delays, f)
        return out

    def with_fractions(self, spec: CoreSpec) -> "FixedNetwork":
        """The same network in a spec with more learning fractions (the same forward values).

        Weights and biases shift left by the added weight fraction bits, delays
        by the added delay fraction bits; every other width must be equal.
        Used to hand a deployed network to a learning core.
        """
        others = {k: v for k, v in spec.to_dict().items() if k not in ("weight_frac_bits", "delay_frac_bits")}
        mine = {k: v for k, v in self.spec.to_dict().items() if k not in ("weight_frac_bits", "delay_frac_bits")}
        if others != mine:
            changed = sorted(k for k in others if others[k] != mine[k])
            raise ValueError(f"The spec may only add learning fractions; it changes {changed}")
        dw = spec.weight_frac_bits - self.spec.weight_frac_bits
        dd = spec.delay_frac_bits - self.spec.delay_frac_bits
        if dw < 0 or dd < 0:
            raise ValueError(f"The spec must keep at least the network's fractions (weights "
                             f"{self.spec.weight_frac_bits}, delays {self.spec.delay_frac_bits}), not "
                             f"{spec.weight_frac_bits} and {spec.delay_frac_bits}")
        return FixedNetwork(spec=spec, w_in=self.w_in << dw, w_rec=self.w_rec << dw, delays=self.delays << dd,
                            bias=self.bias << dw, w_out=self.w_out << dw, bias_out=self.bias_out << dw,
                            theta=self.theta, leak=self.leak, readout_leak=self.readout_leak, reset=self.reset,
                            meta=dict(self.meta), score_start=self.score_start,
                            input_delays=None if self.input_delays is None else self.input_delays << dd)

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
        if self.input_delays is not None and self.input_delays.shape not in ((C,), (N, C)):
            raise ValueError(f"input_delays must have shape ({C},) (axonal) or ({N}, {C}) (synaptic), "
                             f"not {self.input_delays.shape}")
        if N < 1 or C < 1 or K < 1:
            raise ValueError(f"Need at least one input, neuron and class, not C={C}, N={N}, K={K}")
        lo, hi = signed_range(spec.weight_store_bits)
        for name in ("w_in", "w_rec", "w_out"):
            check_range(name, getattr(self, name), lo, hi, f"the {spec.weight_store_bits}-bit weight range")
        delay_range = (f"the delay range of D = {spec.depth}"
                       + (f" in 2^-{spec.delay_frac_bits} steps" if spec.delay_frac_bits else ""))
        check_range("delays", self.delays, 0, spec.delay_max, delay_range)
        if self.input_delays is not None:
            check_range("input_delays", self.input_delays, 0, spec.delay_max, delay_range)
        check_range("bias", self.bias, *signed_range(spec.bias_store_bits),
                    f"the {spec.bias_store_bits}-bit bias range")
        check_range("bias_out", self.bias_out, *signed_range(spec.readout_bias_store_bits),
                    f"the {spec.readout_bias_store_bits}-bit readout bias range")
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
        """Worst-case ``|I_i|`` per hidden neuron and ``|R_k|`` per readout unit (forward weights)."""
        fwd = self.forward()
        hidden = np.abs(fwd["w_in"]).sum(1) * max_input + np.abs(fwd["w_rec"]).sum(1)
        readout = np.abs(fwd["w_out"]).sum(1)
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
        """Write an ``.npz`` (arrays) with the scalars and spec as JSON inside (atomically)."""
        path = Path(path)
        header = dict(format=IMAGE_FORMAT, spec=self.spec.to_dict(), theta=self.theta,
                      leak=self.leak, readout_leak=self.readout_leak, reset=self.reset,
                      meta=self.meta, score_start=self.score_start)
        arrays = {n: getattr(self, n) for n in _ARRAYS}
        if self.input_delays is not None:
            arrays["input_delays"] = self.input_delays
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, header=np.array(json.dumps(header)), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "FixedNetwork":
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)
            header = json.loads(str(data["header"]))
            arrays = {n: data[n] for n in _ARRAYS}
            if "input_delays" in data.files:
                arrays["input_delays"] = data["input_delays"]
        except FileNotFoundError:
            raise
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same error
            raise ValueError(f"{path} is not a delrec fixed-network image: {err}") from err
        if header.get("format") != IMAGE_FORMAT:
            raise ValueError(f"{path} has format {header.get('format')!r}, expected {IMAGE_FORMAT!r}")
        missing = [k for k in ("spec", "theta", "leak", "readout_leak", "reset") if k not in header]
        if missing:
            raise ValueError(f"{path} is not a delrec fixed-network image: its header lacks {missing}")
        spec = CoreSpec.from_dict(header["spec"])
        return cls(spec=spec, theta=header["theta"], leak=header["leak"],
                   readout_leak=header["readout_leak"], reset=header["reset"],
                   meta=header.get("meta", {}), score_start=header.get("score_start", 0), **arrays)

    def equals(self, other: "FixedNetwork") -> bool:
        same_inputs = (self.input_delays is None) == (other.input_delays is None) and \
            (self.input_delays is None or np.array_equal(self.input_delays, other.input_delays))
        return (self.spec == other.spec and self.reset == other.reset and same_inputs
                and (self.theta, self.leak, self.readout_leak, self.score_start)
                == (other.theta, other.leak, other.readout_leak, other.score_start)
                and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in _ARRAYS))

    @classmethod
    def random(cls, spec: CoreSpec, inputs: int, neurons: int, classes: int, rng: np.random.Generator,
               delay_kind: str = "axonal", weight_scale: float = 0.5, reset: str = "hard",
               recurrent: bool = True, max_input: int = 1,
               input_delay_kind: str | None = None) -> "FixedNetwork":
        """A random network for tests: weights within ``weight_scale`` of full range,
        delays uniform in ``0..D-1`` (both ends forced to occur when there is room),
        scaled down if needed so the accumulators stay exact.

        With learning fractions in ``spec``, the stored values get random
        fractions below the same forward values (delays anywhere in
        ``0..delay_max``); ``input_delay_kind`` adds input delays. A spec
        without fractions and no input delays draws exactly as before.
        """
        if delay_kind not in DELAY_KINDS:
            raise ValueError(f"Delay kind must be one of {DELAY_KINDS}, not {delay_kind!r}")
        if input_delay_kind not in DELAY_KINDS + (None,):
            raise ValueError(f"Input delay kind must be one of {DELAY_KINDS} or None, "
                             f"not {input_delay_kind!r}")
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
        leak, readout_leak = int(rng.integers(plo, phi + 1)), int(rng.integers(plo, phi + 1))
        input_delays = None
        if input_delay_kind is not None:
            shape = (inputs,) if input_delay_kind == "axonal" else (neurons, inputs)
            input_delays = rng.integers(0, spec.depth, size=shape)
        wf, f = spec.weight_frac_bits, spec.delay_frac_bits
        if wf:
            w_in, w_out, bias, bias_out = (
                (a << wf) + rng.integers(0, 1 << wf, size=a.shape) for a in (w_in, w_out, bias, bias_out))
            w_rec = (w_rec << wf) + (rng.integers(0, 1 << wf, size=w_rec.shape) if recurrent else 0)
        if f:
            delays = np.clip(delays + rng.integers(-(1 << f) // 2, (1 << f) // 2, size=delays.shape),
                             0, spec.delay_max)
            if input_delays is not None:
                input_delays = np.clip((input_delays << f) + rng.integers(-(1 << f) // 2, (1 << f) // 2,
                                                                          size=input_delays.shape),
                                       0, spec.delay_max)
        return cls(spec=spec, w_in=w_in, w_rec=w_rec, delays=delays, bias=bias, w_out=w_out,
                   bias_out=bias_out, theta=theta, leak=leak, readout_leak=readout_leak, reset=reset,
                   input_delays=input_delays)


RULE_FORMAT = "delrec-learning-rule-v1"


@dataclass
class LearningRule:
    """What a learning core is told about the three-factor rule (plain numpy, checked once).

    The per-step rule of :class:`~delrec.golden.online_fixed.FixedOnlineNetwork`
    as the core's registers and table hold it.

    Parameters
    ----------
    spec : CoreSpec
    lut : int array ``[2R + 1]``
        The Gaussian-derivative table (:func:`delrec.arith.gaussian_derivative_lut`),
        ``lut_bits`` signed.
    lr_delay_shift, lr_readout_shift : int
        The delays' and the readout's learning-rate shifts, ``0..63``.
    loss_start : int
        First step that learns (the traces run from step 0).
    target : int
        The per-step error's target value of the label's readout unit.
    input_delays, recurrent_delays, readout_bias : bool
        What learns besides the readout weights.
    """

    spec: CoreSpec
    lut: np.ndarray
    lr_delay_shift: int
    lr_readout_shift: int
    loss_start: int = 0
    target: int = 128
    input_delays: bool = True
    recurrent_delays: bool = True
    readout_bias: bool = False

    def __post_init__(self):
        if not isinstance(self.spec, CoreSpec):
            raise TypeError(f"spec must be a delrec.arith.CoreSpec, not {self.spec!r}")
        lut = np.asarray(self.lut)
        if lut.dtype.kind not in "iu" or lut.ndim != 1 or lut.size % 2 != 1:
            raise ValueError(f"The table must be a 1-D integer array of odd length 2R + 1, not "
                             f"{lut.dtype} of shape {lut.shape}")
        self.lut = lut.astype(np.int64)
        check_range("lut", self.lut, *signed_range(self.spec.lut_bits), f"the {self.spec.lut_bits}-bit range")
        for name in ("lr_delay_shift", "lr_readout_shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 63:
                raise ValueError(f"{name} must be an integer in 0..63, not {value!r}")
            setattr(self, name, int(value))
        if isinstance(self.loss_start, bool) or not isinstance(self.loss_start, (int, np.integer)) \
                or self.loss_start < 0:
            raise ValueError(f"loss_start must be a non-negative integer, not {self.loss_start!r}")
        lo, hi = signed_range(self.spec.readout_bits)
        if not lo <= int(self.target) <= hi:
            raise ValueError(f"Target {self.target} is outside the {self.spec.readout_bits}-bit readout "
                             f"range [{lo}, {hi}]")
        self.loss_start, self.target = int(self.loss_start), int(self.target)
        for name in ("input_delays", "recurrent_delays", "readout_bias"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be true or false, not {getattr(self, name)!r}")
            setattr(self, name, bool(getattr(self, name)))

    @property
    def reach(self) -> int:
        """``R``: the table covers ``x = -R..R`` (``2^-delay_frac_bits`` steps)."""
        return (self.lut.size - 1) // 2
