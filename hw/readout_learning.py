"""The datapath of the readout's learning commands: per-step errors, their broadcast, the updates.

:class:`ReadoutLearning` is the arithmetic of :class:`~delrec.hw.readout.Readout`'s
``errors``, ``broadcast``, ``learn`` and ``learn_bias`` commands: the
:class:`~delrec.hw.readout.Readout` sequences the elements and owns the
weight, bias and value memories; this component keeps ``e_k`` and the steps
``parameter_step(err_k, shift)`` and turns the words those memories read into
writes and learning signals, each formula a composition of the
:mod:`delrec.arith` functions (:func:`~delrec.arith.step_error`,
:func:`~delrec.arith.feedback_weight`, :func:`~delrec.arith.broadcast_signal`,
:func:`~delrec.arith.parameter_step`, :func:`~delrec.arith.weight_update`).

It is built for area (the iCE40 UP5K), not speed: the run-time shifts are one
serial shift register (one bit a cycle) instead of barrel shifters, the sum over
``k`` of the broadcast is the accumulator of the multiplier's DSP, the steps are
kept complemented so that every update is an addition (an iCE40 subtraction
costs a second LUT a bit), and the saturations test the discarded bits instead
of comparing with the limits.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.arith import CoreSpec

from .fixed import delay_line, forward_value

__all__ = ["ReadoutLearning", "feedback_weight", "saturate", "saturated_register", "clamp",
           "round_bit_complement", "BROADCAST_STAGES"]

#: For yosys: no word is read and written in one cycle where the read's result is used (see
#: :data:`delrec.hw.readout._NO_RW_CHECK`).
_NO_RW_CHECK = {"no_rw_check": 1}
#: Cycles from a broadcast element's issue to its product (the weight port's read latency).
BROADCAST_STAGES = 3


def feedback_weight(value: Value, spec: CoreSpec) -> Value:
    """:func:`delrec.arith.feedback_weight`: ``value >> (weight_frac_bits - feedback_frac_bits)``."""
    return forward_value(value, spec.weight_frac_bits - spec.feedback_frac_bits)


def saturate(value: Value, bits: int) -> Value:
    """:func:`delrec.arith.sat` to ``bits`` bits (``signed(bits)``), by the bits it would drop.

    ``value`` fits when its bits from ``bits - 1`` up are all equal; otherwise
    the limit of its sign. Same function as :func:`delrec.hw.fixed.saturate`,
    without the two comparators (carry chains on an iCE40).
    """
    value = Value.cast(value)
    width = value.shape().width
    if not value.shape().signed:
        value, width = Cat(value, Const(0, 1)).as_signed(), width + 1
    if width <= bits:
        return Cat(value, value[-1].replicate(bits - width)).as_signed()
    top = value[bits - 1:]
    fits = ~top.any() | top.all()
    sign = value[-1]
    return Mux(fits, value[:bits], Cat((~sign).replicate(bits - 1), sign)).as_signed()


def saturated_register(m: Module, value: Value, bits: int, en: Value, name: str) -> Value:
    """:func:`saturate` of ``value``, registered where ``en`` is high: one OR a bit.

    The bits below the sign are registered with a synchronous reset on a
    negative overflow (free in an iCE40 flip-flop), a positive overflow is
    registered beside them and ORed in: with a multiplexer behind it, one LUT
    a bit instead of two.
    """
    value = Value.cast(value)
    assert value.shape().signed and len(value) > bits
    top = value[bits - 1:]
    fits = ~top.any() | top.all()
    sign = value[-1]
    low = Signal(bits - 1, name=f"{name}_low", reset_less=True)
    high = Signal(name=f"{name}_sign", reset_less=True)
    over = Signal(name=f"{name}_over", reset_less=True)
    with m.If(en):
        m.d.sync += [low.eq(Mux(~fits & sign, 0, value[:bits - 1])), high.eq(sign), over.eq(~fits & ~sign)]
    return Cat(low | over.replicate(bits - 1), high).as_signed()


def clamp(value: Value, lo: int, hi: int) -> Value:
    """:func:`delrec.arith.clamp` with constant bounds: :func:`saturate` to their width first.

    The result is ``signed`` of the bounds' width; a bound at (or next to) the
    end of that range needs no comparator (``-2^(b-1) + 1`` is one equality).
    """
    bits = max(lo.bit_length(), hi.bit_length()) + 1
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = saturate(value, bits)
    if hi < high:
        out = Mux(out > hi, hi, out)
    if lo == low + 1:
        out = Mux(out == low, lo, out)
    elif lo > low:
        out = Mux(out < lo, lo, out)
    return out


def round_bit_complement(doubled_complement: Value) -> Value:
    """The complement of the rounding increment of ``rshift_round(x, j)``: ``~x[j - 1]``.

    ``rshift_round(x, j) = (x >> j) + x[j - 1]`` (``x[-1] = 0``); the errors'
    shift register holds ``~(x >> (j - 1))`` (``~2x`` for ``j = 0``), whose
    low bit this is.
    """
    return Value.cast(doubled_complement)[0]


class ReadoutLearning(wiring.Component):
    """``e_k``, the steps and the learning arithmetic of ``K`` readout units over ``N`` neurons.

    Memories (one read and one write port each, synchronous reads, never read
    and written at one address in one cycle where the read is used):
    ``signals`` ``K x signal_bits`` (``e_k``) and ``steps`` ``K x (W + 1)``
    (``~(2 err_k) >> j`` for the step ``s_k = parameter_step(err_k, shift) =
    rshift_round(err_k, j)``, ``j = min(shift, W)``: the complements of
    ``err_k >> j`` and of the rounding bit, see below). ``W = readout_bits +
    1`` is the width of ``err_k`` (:meth:`error_width`).

    The :class:`~delrec.hw.readout.Readout` drives, per cycle:

    ``errors`` (high through the command)
        The element counter ``c`` counts ``0 .. W`` (it is ``W - 1`` while
        ``errors`` is low); ``errors_load`` is high at ``c = W``: ``value``
        then holds ``V_k`` of ``unit = k`` (read the cycle before), and
        ``~(2 err_k)``, ``err_k = V_k - target [k = label]`` (``[k = label]``
        registered the cycle before from ``unit``), is loaded into the shift
        register (the last ``c = W`` of the command, ``unit = K``, loads
        nothing). At ``c = j`` the register holds ``~(err_k >> (j - 1))``
        (``~(2 err_k)`` at ``j = 0``): the complements of ``f = err_k >> j``
        and of the rounding bit ``r = err_k[j - 1]``, ``rshift_round(err_k,
        j) = f + r``. ``e_k = clamp(f + r)`` (``f`` saturated to
        ``signal_bits`` first, so that the increment is narrow) is written
        at ``j = min(error_shift, W)``, the register itself at ``j =
        min(shift, W)`` (every shift from ``W`` on rounds to 0), both at
        ``write_unit``; then the register shifts right by one.
    ``broadcast`` / ``gap``
        :data:`BROADCAST_STAGES` cycles after a broadcast cycle that is no
        gap, ``weight`` is the weight it read and ``e_k`` (read at ``e_unit``
        the cycle before) times ``feedback_weight(weight)`` is added to the
        accumulator of the multiplier's DSP; that many cycles after a gap it
        holds ``2^(s-1) + sum_k e_k feedback_weight(w_out[k, i])`` (``s =
        weight_bits - 1 + feedback_frac_bits``, the rounding of
        :func:`~delrec.arith.broadcast_signal`): ``signal_valid`` is high for
        that cycle with ``signal_value = sat(acc >> s)`` and ``signal_neuron
        = i`` (a count of the pulses, 0 again after ``N``), and the
        accumulator is loaded with ``2^(s-1)`` (likewise in every cycle
        without a product).
    ``capture`` (``learn`` / ``learn_bias``)
        ``weight_result = weight_update(weight, s_k)`` and ``bias_result =
        weight_update(bias, s_k)`` (``s_k`` read at ``write_unit`` the cycle
        before), computed as ``w + ~f + ~r = w - s_k`` (an addition with a
        carry in) and registered, saturated, at the end of a ``capture``
        cycle (:func:`saturated_register`); they hold until the next.

    ``busy`` is high while a broadcast element is in flight.

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
        super().__init__({
            "errors": In(1),
            "errors_load": Out(1),
            "broadcast": In(1),
            "gap": In(1),
            "unit": In(range(classes + 1)),
            "write_unit": In(range(classes + 1)),
            "e_unit": In(range(classes + 1)),
            "value": In(signed(spec.readout_bits)),
            "weight": In(signed(spec.weight_store_bits)),
            "bias": In(signed(spec.readout_bias_store_bits)),
            "label": In(range(classes + 1)),
            "target": In(signed(spec.readout_bits)),
            "error_shift": In(unsigned(6)),
            "shift": In(unsigned(6)),
            "capture": In(1),
            "weight_result": Out(signed(spec.weight_store_bits)),
            "bias_result": Out(signed(spec.readout_bias_store_bits)),
            "signal_valid": Out(1),
            "signal_neuron": Out(range(neurons)),
            "signal_value": Out(signed(spec.signal_bits)),
            "busy": Out(1),
        })

    @staticmethod
    def error_width(spec: CoreSpec) -> int:
        """``W``: the width of ``err_k = V_k - target``; an ``errors`` element takes ``W + 1`` cycles."""
        return spec.readout_bits + 1

    def elaborate(self, platform):
        spec, N, K = self._spec, self._neurons, self._classes
        W = self.error_width(spec)
        m = Module()
        m.submodules.signals = signals = Memory(shape=signed(spec.signal_bits), depth=K, init=[],
                                                attrs=_NO_RW_CHECK)
        m.submodules.steps = steps = Memory(shape=signed(W + 1), depth=K, init=[], attrs=_NO_RW_CHECK)
        e_w, e_r = signals.write_port(), signals.read_port()
        step_w, step_r = steps.write_port(), steps.read_port()
        m.d.comb += [e_r.addr.eq(self.e_unit), step_r.addr.eq(self.write_unit)]

        # errors: ~(2 err_k) loaded into a register shifted right one bit a cycle: at c = j it
        # holds ~(err_k >> (j - 1)), the complements of f = err_k >> j and of the rounding bit r
        c = Signal(range(W + 1), reset_less=True)
        valid = Signal()                                  # the register holds an element
        hit = Signal()                                    # unit = label, for the next load
        held = Signal(signed(W + 1), reset_less=True)     # ~(err_k >> (c - 1))
        m.d.comb += self.errors_load.eq(c == W)
        m.d.sync += hit.eq(self.unit == self.label)
        with m.If(~self.errors):
            m.d.sync += [c.eq(W - 1), valid.eq(0)]
        with m.Elif(self.errors_load):
            # the last element's c = W is the command's last cycle: nothing is loaded then
            err = (self.value - Mux(hit, self.target, 0))[:W]
            m.d.sync += [c.eq(0), valid.eq(self.unit != K), held.eq(Cat(1, ~err))]
        with m.Else():
            m.d.sync += [c.eq(c + 1), held.eq(held >> 1)]
        floor = (~held[1:]).as_signed()                   # f = err_k >> c
        round_bit = ~round_bit_complement(held)           # r: rshift_round(err_k, c) = f + r

        def at(shift):
            return valid & Mux(shift >= W, c == W, c == shift)

        # e_k = clamp(f + r): f saturated to signal_bits first, so that the increment is narrow
        top = (1 << (spec.signal_bits - 1)) - 1
        m.d.comb += [
            e_w.en.eq(at(self.error_shift)), e_w.addr.eq(self.write_unit),
            e_w.data.eq(clamp(saturate(floor, spec.signal_bits) + round_bit, -top, top)),
            step_w.en.eq(at(self.shift)), step_w.addr.eq(self.write_unit), step_w.data.eq(held),
        ]

        # learn, learn_bias: w - s_k = w + ~f + ~r (an addition with a carry in), saturated and
        # registered at capture
        step = step_r.data[1:].as_signed(), round_bit_complement(step_r.data)
        m.d.comb += [
            self.weight_result.eq(saturated_register(m, self.weight + step[0] + step[1],
                                                     spec.weight_store_bits, self.capture, "weight_result")),
            self.bias_result.eq(saturated_register(m, self.bias + step[0] + step[1],
                                                   spec.readout_bias_store_bits, self.capture, "bias_result")),
        ]

        # broadcast: acc = 2^(s-1) + sum_k e_k feedback_weight(w) in the DSP's accumulator
        staged = delay_line(m, Cat(self.broadcast, self.gap), BROADCAST_STAGES, "broadcasting")
        arriving, gap = staged[-1][0], staged[-1][1]
        fb = feedback_weight(self.weight, spec)
        shift = spec.weight_bits - 1 + spec.feedback_frac_bits
        offset = 1 << (shift - 1)
        acc = Signal(signed(spec.signal_bits + len(fb) + max(1, (K - 1).bit_length()) + 2),
                     reset_less=True)
        m.d.sync += acc.eq(Mux(arriving & ~gap, acc + e_r.data * fb, offset))
        m.d.comb += [
            self.signal_valid.eq(arriving & gap),
            self.signal_value.eq(saturate(acc >> shift, spec.signal_bits)),
            self.busy.eq(Cat(*(stage[0] for stage in staged)).any()),
        ]
        with m.If(self.signal_valid):
            m.d.sync += self.signal_neuron.eq(Mux(self.signal_neuron == N - 1, 0, self.signal_neuron + 1))
        return m
