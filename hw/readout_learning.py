"""The datapath of the readout's learning commands: per-step errors, their broadcast, the updates.

:class:`ReadoutLearning` is the arithmetic of :class:`~delrec.hw.readout.Readout`'s
``errors``, ``broadcast``, ``learn`` and ``learn_bias`` commands: the
:class:`~delrec.hw.readout.Readout` sequences the elements (one per cycle) and
owns the weight, bias and value memories; this component keeps ``err_k`` and
``e_k`` and turns the words those memories read into writes and learning
signals, each formula a composition of the :mod:`delrec.arith` functions
(:func:`~delrec.arith.step_error`, :func:`~delrec.arith.feedback_weight`,
:func:`~delrec.arith.broadcast_signal`, :func:`~delrec.arith.parameter_step`,
:func:`~delrec.arith.weight_update`) through their Amaranth expressions in
:mod:`delrec.hw.fixed`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.arith import CoreSpec

from .banked import BankedMemory
from .fixed import clamp, delay_line, forward_value, rshift_round, saturate

__all__ = ["ReadoutLearning", "feedback_weight", "rshift_round_stages",
           "ERRORS_STAGES", "LEARN_STAGES", "BROADCAST_STAGES"]

#: Cycles of an ``errors`` command after its last element is issued (its last ``e_k`` write).
ERRORS_STAGES = 4
#: Cycles of a ``learn`` or ``learn_bias`` command after its last element is issued (its last write).
LEARN_STAGES = 4
#: Cycles of a ``broadcast`` command after its last element is issued (its last ``signal_valid``).
BROADCAST_STAGES = 7

#: Issue to weight: the weight memory's read latency; the learn pipeline is written for 3.
_LATENCY = BankedMemory.LATENCY


def feedback_weight(value: Value, spec: CoreSpec) -> Value:
    """:func:`delrec.arith.feedback_weight`: ``value >> (weight_frac_bits - feedback_frac_bits)``."""
    return forward_value(value, spec.weight_frac_bits - spec.feedback_frac_bits)


def rshift_round_stages(m: Module, value: Value, shift: Value, name: str) -> Signal:
    """:func:`~delrec.hw.fixed.rshift_round` of a run-time ``shift``, in two registered stages.

    ``(x + 2^(k-1)) >> k = rshift_round(x >> (k - 1), 1)`` (nested floors): the
    first stage is the barrel shifter, the second the rounding increment, so
    no stage holds both. ``shift`` is read in the first stage; the result
    (``value``'s shape: it never grows) is the signal returned, two cycles after ``value``.
    """
    value = Value.cast(value)
    shift = Value.cast(shift).as_unsigned()
    exact = Signal(value.shape(), name=f"{name}_exact")
    coarse = Signal(value.shape(), name=f"{name}_coarse")
    zero = Signal(name=f"{name}_zero")
    out = Signal(value.shape(), name=name)
    m.d.sync += [
        exact.eq(value),
        coarse.eq(value >> (shift - 1)[:len(shift)]),
        zero.eq(shift == 0),
        out.eq(Mux(zero, exact, rshift_round(coarse, 1))),
    ]
    return out


def _delay(m: Module, value: Value, cycles: int, name: str) -> Value:
    return value if cycles == 0 else delay_line(m, value, cycles, name)[-1]


class ReadoutLearning(wiring.Component):
    """``err_k``, ``e_k`` and the learning arithmetic of ``K`` readout units over ``N`` neurons.

    Memories (one read and one write port each, synchronous reads): ``errors``
    ``K x (readout_bits + 1)`` (``err_k = V_k - target [k = label]``, exact)
    and ``signals`` ``K x signal_bits`` (``e_k``).

    Each cycle the :class:`~delrec.hw.readout.Readout` may issue one element
    of one command (the strobe of its name, with ``unit = k``; ``neuron = i``
    and ``weight_addr`` where the command reads a weight) and presents the
    words it read for it: ``value`` (``V_k``) and ``bias`` (stored ``b_k``) one
    cycle later, ``weight`` (stored ``w_out``) ``BankedMemory.LATENCY`` cycles
    later. Per element:

    ``errors``
        :data:`ERRORS_STAGES` stages: ``[k = label]``; ``err_k`` (one adder,
        written); the shift and the rounding of :func:`rshift_round_stages`;
        the clamp of :func:`~delrec.arith.step_error` and the write of ``e_k``.
    ``broadcast``
        :data:`BROADCAST_STAGES` stages: ``e_k`` read and held beside the
        weight's read; ``e_k * feedback_weight(w)`` (the multiplier); the sum
        over ``k`` (one adder); after ``k = K - 1``, the rounding of
        :func:`~delrec.arith.broadcast_signal` (one adder); its saturation into
        the output registers: ``signal_valid`` is high for one cycle with
        ``signal_neuron = i``, ``signal_value = L_i``.
    ``learn`` / ``learn_bias``
        :data:`LEARN_STAGES` stages: ``err_k`` read; the two stages of
        ``parameter_step(err_k, shift)``; ``w - step`` (one adder); its
        saturation (:func:`~delrec.arith.weight_update`) into the write of the
        weight (at ``weight_addr``) or the bias (at ``k``).

    ``writing`` is high while a ``learn`` or ``learn_bias`` element has not
    been written, ``errors_busy`` while an ``errors`` element has not, ``busy``
    while any element is in flight (a ``broadcast`` until its last pulse).

    Parameters
    ----------
    neurons, classes : int
        ``N`` and ``K``.
    spec : CoreSpec
    """

    def __init__(self, neurons: int, classes: int, spec: CoreSpec):
        for name, value in (("neurons", neurons), ("classes", classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Readout learning {name} must be a positive integer, not {value!r}")
        self._neurons, self._classes, self._spec = neurons, classes, spec
        addr_bits = max(1, (neurons * classes - 1).bit_length())
        super().__init__({
            "errors": In(1),
            "broadcast": In(1),
            "learn": In(1),
            "learn_bias": In(1),
            "unit": In(range(classes + 1)),
            "neuron": In(range(neurons)),
            "weight_addr": In(unsigned(addr_bits)),
            "value": In(signed(spec.readout_bits)),
            "weight": In(signed(spec.weight_store_bits)),
            "bias": In(signed(spec.readout_bias_store_bits)),
            "label": In(range(classes + 1)),
            "target": In(signed(spec.readout_bits)),
            "error_shift": In(unsigned(6)),
            "shift": In(unsigned(6)),
            "weight_write_en": Out(1),
            "weight_write_addr": Out(unsigned(addr_bits)),
            "weight_write_data": Out(signed(spec.weight_store_bits)),
            "bias_write_en": Out(1),
            "bias_write_addr": Out(range(classes + 1)),
            "bias_write_data": Out(signed(spec.readout_bias_store_bits)),
            "signal_valid": Out(1),
            "signal_neuron": Out(range(neurons)),
            "signal_value": Out(signed(spec.signal_bits)),
            "writing": Out(1),
            "errors_busy": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        assert _LATENCY == 3, f"the learning datapath is written for a weight read latency of 3, not {_LATENCY}"
        spec, K = self._spec, self._classes
        m = Module()
        m.submodules.errors = errors = Memory(shape=signed(spec.readout_bits + 1), depth=K, init=[])
        m.submodules.signals = signals = Memory(shape=signed(spec.signal_bits), depth=K, init=[])
        err_w, err_r = errors.write_port(), errors.read_port()
        e_w, e_r = signals.write_port(), signals.read_port()
        m.d.comb += [err_r.addr.eq(self.unit), e_r.addr.eq(self.unit)]
        units = delay_line(m, self.unit, 4, "unit")

        # errors: stage 1 [k = label]; 2 err_k = V_k - target [k = label]; 3, 4 rounding; 4 clamp, e_k
        erroring = delay_line(m, self.errors, ERRORS_STAGES, "erroring")
        hit = Signal()
        err = Signal(signed(spec.readout_bits + 1))
        m.d.sync += [hit.eq(self.unit == self.label), err.eq(self.value - Mux(hit, self.target, 0))]
        rounded = rshift_round_stages(m, err, self.error_shift, "error_rounded")
        top = (1 << (spec.signal_bits - 1)) - 1
        m.d.comb += [
            err_w.en.eq(erroring[1]), err_w.addr.eq(units[1]), err_w.data.eq(err),
            e_w.en.eq(erroring[3]), e_w.addr.eq(units[3]), e_w.data.eq(clamp(rounded, -top, top)),
        ]

        # learn, learn_bias: stage 1 err_k read; 2, 3 parameter_step; 4 w - step; then saturated, written
        learning = delay_line(m, self.learn, LEARN_STAGES, "learning")
        biasing = delay_line(m, self.learn_bias, LEARN_STAGES, "biasing")
        addrs = delay_line(m, self.weight_addr, LEARN_STAGES, "learn_addr")
        step = _delay(m, rshift_round_stages(m, err_r.data, self.shift, "step"), _LATENCY - 3, "step")
        bias = _delay(m, self.bias, _LATENCY - 1, "bias")
        weight_diff = Signal(signed(spec.weight_store_bits + spec.readout_bits + 2))
        bias_diff = Signal(signed(spec.readout_bias_store_bits + spec.readout_bits + 2))
        m.d.sync += [weight_diff.eq(self.weight - step), bias_diff.eq(bias - step)]
        m.d.comb += [
            self.weight_write_en.eq(learning[-1]), self.weight_write_addr.eq(addrs[-1]),
            self.weight_write_data.eq(saturate(weight_diff, spec.weight_store_bits)),
            self.bias_write_en.eq(biasing[-1]), self.bias_write_addr.eq(units[-1]),
            self.bias_write_data.eq(saturate(bias_diff, spec.readout_bias_store_bits)),
        ]

        # broadcast: e_k beside the weight; e_k * feedback_weight(w); the sum over k; then L_i
        flags = Cat(self.broadcast, self.unit == 0, self.broadcast & (self.unit == K - 1))
        staged = delay_line(m, flags, _LATENCY + 3, "broadcasting")
        neurons = delay_line(m, self.neuron, _LATENCY + 3, "broadcast_neuron")
        e = _delay(m, e_r.data, _LATENCY - 1, "e")
        fb = feedback_weight(self.weight, spec)
        product = Signal(signed(spec.signal_bits + len(fb)))
        total = Signal(signed(len(product) + max(1, (K - 1).bit_length()) + 1))
        total_rounded = Signal(signed(len(total) + 1))
        m.d.sync += [
            product.eq(e * fb),
            total_rounded.eq(rshift_round(total, spec.weight_bits - 1 + spec.feedback_frac_bits)),
            self.signal_valid.eq(staged[_LATENCY + 2][2]),
            self.signal_neuron.eq(neurons[_LATENCY + 2]),
            self.signal_value.eq(saturate(total_rounded, spec.signal_bits)),
        ]
        with m.If(staged[_LATENCY][0]):
            m.d.sync += total.eq(Mux(staged[_LATENCY][1], 0, total) + product)

        in_flight = Cat(*(s[0] for s in staged), self.signal_valid)
        m.d.comb += [
            self.writing.eq(Cat(*learning, *biasing).any()),
            self.errors_busy.eq(Cat(*erroring).any()),
            self.busy.eq(self.writing | self.errors_busy | in_flight.any()),
        ]
        return m
