"""One lane of the LIF neuron update: :func:`delrec.arith.neuron_update` in logic."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from delrec.arith import CoreSpec

from .fixed import decay, saturate

__all__ = ["NeuronDatapath"]


class NeuronDatapath(wiring.Component):
    """Combinational LIF update of one neuron (no state).

    ``h = sat_v(decay(membrane) + current + bias)``, ``spike = h >= theta``,
    ``membrane_next = (h - theta if soft else 0) if spike else h``: bit-exact
    with :func:`delrec.arith.neuron_update`. One multiplier of
    ``v_bits x (decay_bits + 1)`` in ``multiply`` leak mode, a barrel shifter
    in ``shift`` mode.

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
        leaked = decay(self.membrane, self.leak, spec.leak, spec.decay_bits)
        m.d.comb += [
            self.charge.eq(saturate(leaked + self.current + self.bias, spec.v_bits)),
            self.spike.eq(self.charge >= self.theta),
        ]
        after_spike = Mux(self.soft_reset, (self.charge - self.theta)[:spec.v_bits].as_signed(), 0)
        m.d.comb += self.membrane_next.eq(Mux(self.spike, after_spike, self.charge))
        return m
