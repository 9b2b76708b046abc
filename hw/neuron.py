"""One lane of the LIF neuron update: :func:`delrec.arith.neuron_update` in pipelined logic."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from delrec.arith import CoreSpec

from .fixed import decay, saturate

__all__ = ["NeuronDatapath"]


class NeuronDatapath(wiring.Component):
    """LIF update of one neuron, a pipeline of :attr:`LATENCY` register stages (no other state).

    ``h = sat_v(decay(membrane) + current + bias)``, ``spike = h >= theta``,
    ``membrane_next = (h - theta if soft else 0) if spike else h``: bit-exact
    with :func:`delrec.arith.neuron_update`. One multiplier of
    ``v_bits x (decay_bits + 1)`` in ``multiply`` leak mode, a barrel shifter
    in ``shift`` mode.

    The inputs ``membrane``, ``current`` and ``bias`` of cycle ``c`` (the
    read data of the core's memories) give ``charge``, ``spike`` and
    ``membrane_next`` on cycle ``c + LATENCY``; a new neuron may enter every
    cycle. Stage 1 registers the leaked membrane (the multiplier alone) and
    ``current + bias``; stage 2 their saturated sum ``h``; stage 3 ``h``, the
    threshold compare and ``h - theta``; the reset is one multiplexer after
    them. ``theta``, ``leak`` and ``soft_reset`` are configuration and must
    be steady while neurons are in flight. Short paths instead of one long
    one: what lets the core approach 100 MHz on an ECP5.

    Parameters
    ----------
    spec : CoreSpec
        Widths and leak mode.
    leak_bits : int
        Width of the ``leak`` parameter input.

    Attributes
    ----------
    membrane : In(signed(v_bits))
        ``v`` before the step.
    current : In(signed(acc_bits))
        ``I``: the exact sum of the step's weighted input and recurrent events.
    bias : In(signed(v_bits))
    theta : In(signed(v_bits))
        Threshold, positive.
    leak : In(unsigned(leak_bits))
        Leak parameter of :func:`delrec.arith.decay`.
    soft_reset : In(1)
        1: subtract ``theta`` on a spike; 0: reset to zero.
    charge : Out(signed(v_bits))
        ``h``.
    spike : Out(1)
    membrane_next : Out(signed(v_bits))
    """

    #: Cycles from the inputs to the outputs.
    LATENCY = 3

    def __init__(self, spec: CoreSpec, leak_bits: int):
        self._spec = spec
        super().__init__({
            "membrane": In(signed(spec.v_bits)),
            "current": In(signed(spec.acc_bits)),
            "bias": In(signed(spec.v_bits)),
            "theta": In(signed(spec.v_bits)),
            "leak": In(unsigned(leak_bits)),
            "soft_reset": In(1),
            "charge": Out(signed(spec.v_bits)),
            "spike": Out(1),
            "membrane_next": Out(signed(spec.v_bits)),
        })

    def elaborate(self, platform):
        spec = self._spec
        m = Module()
        leaked = Signal(signed(spec.v_bits))
        base = Signal(signed(max(spec.acc_bits, spec.v_bits) + 1))
        charge = Signal(signed(spec.v_bits))
        reduced = Signal(signed(spec.v_bits))      # h - theta: cannot overflow when h >= theta > 0
        m.d.sync += [
            leaked.eq(decay(self.membrane, self.leak, spec.leak, spec.decay_bits)),
            base.eq(self.current + self.bias),
            charge.eq(saturate(leaked + base, spec.v_bits)),
            self.charge.eq(charge),
            self.spike.eq(charge >= self.theta),
            reduced.eq((charge - self.theta)[:spec.v_bits].as_signed()),
        ]
        after_spike = Mux(self.soft_reset, reduced, 0)
        m.d.comb += self.membrane_next.eq(Mux(self.spike, after_spike, self.charge))
        return m
