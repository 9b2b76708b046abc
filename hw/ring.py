"""Future-input ring: the delay queue that stores currents, not spikes."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from .fixed import delay_line, sweep
from .ports import RECORD_LATENCY, DelayQueue

__all__ = ["FutureInputRing"]


class FutureInputRing(DelayQueue):
    """``D`` future steps of input current for every neuron.

    Per lane one ``acc_bits``-wide memory of ``B * D`` words (``B = N / P``
    rows; word ``row * D + slot``): slot ``s`` of neuron ``i`` holds the input
    already known to be due at the next step ``t' = s (mod D)``. A spike of
    ``j`` at ``t`` adds ``w_rec[i, j]`` into slot ``(t + 1 + d_ij) mod D``:
    ``1 + d = D`` lands in slot ``t mod D``, which the neuron update has just
    emptied. One more memory of ``B x P`` bits keeps the step's spikes
    (``probe`` with age 0), for the core's in-order spike scan.

    Timing: a delivered row costs one cycle (read-modify-write in two
    pipeline stages; the read port is transparent to the write port, so the
    same word may be hit on consecutive cycles); ``take`` reads a row and
    zeroes it on the next cycle; ``clear`` takes ``B * D`` cycles.

    Constructor: :class:`~delrec.hw.ports.DelayQueue` ``(neurons, lanes, spec)``.
    """

    def elaborate(self, platform):
        spec, rows, lanes = self._spec, self._rows, self._lanes
        depth = spec.depth
        m = Module()

        clearing, clear_addr = sweep(m, self.clear, rows * depth, "clear")
        m.d.comb += self.busy.eq(clearing)

        delivering_1 = Signal()
        taking_1 = Signal()
        m.d.sync += [delivering_1.eq(self.deliver_en), taking_1.eq(self.take_en)]

        for lane in range(lanes):
            ring = Memory(shape=signed(spec.acc_bits), depth=rows * depth, init=[])
            m.submodules[f"ring_{lane}"] = ring
            write = ring.write_port()
            read = ring.read_port(transparent_for=(write,))

            deliver_slot = (self.slot + self.deliver_offset[lane])[:spec.delay_bits]
            with m.If(self.deliver_en):   # never with a take; a register of the core
                m.d.comb += read.addr.eq(Cat(deliver_slot, self.deliver_row))
            with m.Else():
                m.d.comb += read.addr.eq(Cat(self.slot, self.take_row))

            addr_1 = Signal.like(read.addr, name=f"addr_1_{lane}")
            weight_1 = Signal(signed(spec.weight_bits), name=f"weight_1_{lane}")
            m.d.sync += [addr_1.eq(read.addr), weight_1.eq(self.deliver_weight[lane])]

            with m.If(delivering_1):
                m.d.comb += [write.en.eq(1), write.addr.eq(addr_1),
                             write.data.eq((read.data + weight_1)[:spec.acc_bits])]
            with m.Elif(taking_1):
                m.d.comb += [write.en.eq(1), write.addr.eq(addr_1), write.data.eq(0)]
            with m.Elif(clearing):
                m.d.comb += [write.en.eq(1), write.addr.eq(clear_addr), write.data.eq(0)]
            m.d.comb += self.take_current[lane].eq(read.data)

        m.submodules.spiked = spiked = Memory(shape=unsigned(lanes), depth=rows, init=[])
        spiked_write = spiked.write_port()
        spiked_read = spiked.read_port()
        recording = delay_line(m, self.record_en, RECORD_LATENCY, "recording")
        record_rows = delay_line(m, self.record_row, RECORD_LATENCY, "record_row")
        m.d.comb += [
            spiked_write.en.eq(recording[-1]),
            spiked_write.addr.eq(record_rows[-1]),
            spiked_write.data.eq(self.record_spikes),
            spiked_read.en.eq(1),
            spiked_read.addr.eq(self.probe_row),
        ]
        m.d.sync += self.probe_spikes.eq(spiked_read.data)   # PROBE_LATENCY: registered
        return m
