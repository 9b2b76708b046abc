"""Spike history: the delay queue that stores spikes, not currents (axonal delays)."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from .fixed import delay_line
from .ports import RECORD_LATENCY, DelayQueue

__all__ = ["SpikeHistory"]


class SpikeHistory(DelayQueue):
    """The last ``H`` spike bits of every neuron and a one-step current accumulator.

    Per lane: ``history``, ``B`` words of ``H`` bits (``B = N / P`` rows;
    bit ``t mod H`` of row ``b`` is the spike of neuron ``b*P + l`` at step
    ``t``; ``H`` is the queue's depth, ``D`` unless a learning core asks
    for more); ``currents``, ``B`` words of ``acc_bits``: the input of the
    current step.

    A spike bit is recorded by a read-modify-write of its whole row, not by a
    one-bit write enable (block RAMs without bit enables, the ECP5's
    ``DP16KD``, would otherwise need one block per bit column): ``record_en``
    reads the row, and :data:`~delrec.hw.ports.RECORD_LATENCY` cycles later,
    from a register, writes it back with bit ``t mod D`` replaced by
    ``record_spikes``. The history's read port is therefore busy
    during ``record_en``. A probed row is registered, and so is the bit
    position of ``probe_age``, before the bit is selected from the row
    (:data:`~delrec.hw.ports.PROBE_LATENCY`).

    The core turns delays into deliveries itself: before the update of step
    ``t`` it probes, for every ``j``, bit ``(t - 1 - d_j) mod H`` (age
    ``1 + d_j``) and delivers ``w_rec[:, j]`` into ``currents`` when it is set.
    ``deliver_offset`` is therefore ignored: everything lands on the current
    step. With ``H = D`` the bit of age ``D`` (``d = D - 1``) is the one the
    coming update overwrites, still intact when probed.

    Timing: a delivered row costs one cycle (two-stage pipelined
    read-modify-write, transparent read); ``take`` reads a row and zeroes it
    on the next cycle; ``clear`` takes ``B`` cycles.

    Constructor: :class:`~delrec.hw.ports.DelayQueue` ``(neurons, lanes, spec, depth=None)``.
    """

    def elaborate(self, platform):
        spec, rows, lanes = self._spec, self._rows, self._lanes
        depth = self._depth
        slot_bits = (depth - 1).bit_length()
        m = Module()

        clearing = Signal()
        clear_row = Signal(range(rows + 1))
        with m.If(self.clear):
            m.d.sync += [clearing.eq(1), clear_row.eq(0)]
        with m.Elif(clearing):
            m.d.sync += clear_row.eq(clear_row + 1)
            with m.If(clear_row == rows - 1):
                m.d.sync += clearing.eq(0)
        m.d.comb += self.busy.eq(clearing)

        delivering_1 = Signal()
        taking_1 = Signal()
        recording = delay_line(m, self.record_en, RECORD_LATENCY, "recording")
        record_rows = delay_line(m, self.record_row, RECORD_LATENCY, "record_row")
        m.d.sync += [delivering_1.eq(self.deliver_en), taking_1.eq(self.take_en)]
        slot_select = (Const(1, 1) << self.slot)[:depth]

        for lane in range(lanes):
            history = Memory(shape=unsigned(depth), depth=rows, init=[])
            m.submodules[f"history_{lane}"] = history
            history_write = history.write_port()
            history_read = history.read_port()
            probed_row = Signal(depth, name=f"probed_row_{lane}")   # the row read, registered
            with m.If(clearing):
                m.d.comb += [history_write.en.eq(1), history_write.addr.eq(clear_row),
                             history_write.data.eq(0)]
            with m.Elif(recording[-1]):  # the row read and registered, one bit replaced
                m.d.comb += [history_write.en.eq(1), history_write.addr.eq(record_rows[-1]),
                             history_write.data.eq(Mux(self.record_spikes[lane],
                                                       probed_row | slot_select,
                                                       probed_row & ~slot_select))]
            age_slot = Signal(slot_bits, name=f"age_slot_{lane}")   # both registered
            m.d.sync += [probed_row.eq(history_read.data),
                         age_slot.eq(self.slot - self.probe_age[lane])]
            m.d.comb += [
                history_read.en.eq(1),   # no enable on the path: probes are not held
                history_read.addr.eq(Mux(self.record_en, self.record_row, self.probe_row)),
                self.probe_spikes[lane].eq(probed_row.bit_select(age_slot, 1)),
            ]

            currents = Memory(shape=signed(spec.acc_bits), depth=rows, init=[])
            m.submodules[f"currents_{lane}"] = currents
            write = currents.write_port()
            # Not a transparent read: the word written on the cycle of a read of the same row
            # is forwarded from a register instead, so that the read data of the memory (LUT
            # RAM on an ECP5) is registered before the adder sees it.
            read = currents.read_port()
            # deliveries and takes never overlap; deliver_en comes from a register of the core
            m.d.comb += read.addr.eq(Mux(self.deliver_en, self.deliver_row, self.take_row))
            addr_1 = Signal.like(read.addr, name=f"addr_1_{lane}")
            weight_1 = Signal(signed(spec.weight_bits), name=f"weight_1_{lane}")
            forward_1 = Signal(name=f"forward_1_{lane}")
            forwarded_1 = Signal(signed(spec.acc_bits), name=f"forwarded_1_{lane}")
            m.d.sync += [addr_1.eq(read.addr), weight_1.eq(self.deliver_weight[lane]),
                         forward_1.eq(write.en & (write.addr == read.addr)),
                         forwarded_1.eq(write.data)]
            current_1 = Mux(forward_1, forwarded_1, read.data)
            with m.If(delivering_1):
                m.d.comb += [write.en.eq(1), write.addr.eq(addr_1),
                             write.data.eq((current_1 + weight_1)[:spec.acc_bits])]
            with m.Elif(taking_1):
                m.d.comb += [write.en.eq(1), write.addr.eq(addr_1), write.data.eq(0)]
            with m.Elif(clearing):
                m.d.comb += [write.en.eq(1), write.addr.eq(clear_row), write.data.eq(0)]
            m.d.comb += self.take_current[lane].eq(current_1)
        return m
