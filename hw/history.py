"""Spike history: the delay queue that stores spikes, not currents (axonal delays)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from .fixed import delay_line, sweep
from .ports import RECORD_LATENCY, DelayQueue

__all__ = ["SpikeHistory"]


class SpikeHistory(DelayQueue):
    """The last ``H`` spike bits of every neuron and a one-step current accumulator.

    Per lane: ``spikes``, ``H 2^r`` words of one bit (``B = N / P`` rows
    addressed by ``r`` bits; word ``s 2^r + b`` is the spike of neuron ``b*P + l`` at the step ``t`` with
    ``t mod H = s``; ``H`` is the queue's depth, ``D`` unless a learning core
    asks for more), slot-major so that recording a row is one plain write
    and probing one age one plain read; ``currents``, ``B`` words of
    ``acc_bits``: the input of the current step.

    ``record_spikes`` (``RECORD_LATENCY`` after ``record_en``) are written to
    slot ``slot`` of the row. A probe registers its row; on the next cycle,
    when ``probe_age`` arrives (the row's delays out of their memory), the
    slot ``slot - probe_age (mod H)`` is registered; the bit is read on the
    cycle after and registered (a block RAM's output is slow: no logic sees
    it before a register) as ``probe_spikes``:
    :data:`~delrec.hw.ports.PROBE_LATENCY` ``["history"]`` cycles.

    The core turns delays into deliveries itself: before the update of step
    ``t`` it probes, for every ``j``, the spike of age ``1 + d_j`` and
    delivers ``w_rec[:, j]`` into ``currents`` when it is set.
    ``deliver_offset`` is therefore ignored: everything lands on the current
    step. With ``H = D`` the spike of age ``D`` (``d = D - 1``) sits in the
    slot the coming update overwrites, still intact when probed.

    Timing: a delivered row costs one cycle (two-stage pipelined
    read-modify-write, transparent read); ``take`` reads a row and zeroes it
    on the next cycle; ``clear`` takes ``H 2^r`` cycles, ``r = max(1, ceil(log2 B))``
    (every word of the spike memory, whose rows are addressed by ``r`` bits).

    Constructor: :class:`~delrec.hw.ports.DelayQueue` ``(neurons, lanes, spec, depth=None)``.
    """

    def elaborate(self, platform):
        spec, rows, lanes = self._spec, self._rows, self._lanes
        depth = self._depth
        slot_bits = (depth - 1).bit_length()
        row_bits = max(1, (rows - 1).bit_length())
        m = Module()

        def word(slot, row):
            return Cat(row[:row_bits], slot[:slot_bits]) if slot_bits else row[:row_bits]

        clearing, clear_addr = sweep(m, self.clear, depth << row_bits, "clear")
        m.d.comb += self.busy.eq(clearing)

        delivering_1 = Signal()
        taking_1 = Signal()
        recording = delay_line(m, self.record_en, RECORD_LATENCY, "recording")
        record_rows = delay_line(m, self.record_row, RECORD_LATENCY, "record_row")
        probe_row_1 = Signal.like(self.probe_row)
        m.d.sync += [delivering_1.eq(self.deliver_en), taking_1.eq(self.take_en), probe_row_1.eq(self.probe_row)]

        for lane in range(lanes):
            spikes = Memory(shape=unsigned(1), depth=depth << row_bits, init=[])
            m.submodules[f"spikes_{lane}"] = spikes
            spikes_write = spikes.write_port()
            spikes_read = spikes.read_port()
            with m.If(clearing):
                m.d.comb += [spikes_write.en.eq(1), spikes_write.addr.eq(clear_addr), spikes_write.data.eq(0)]
            with m.Elif(recording[-1]):
                m.d.comb += [spikes_write.en.eq(1), spikes_write.addr.eq(word(self.slot, record_rows[-1])),
                             spikes_write.data.eq(self.record_spikes[lane])]
            # the probed row and the slot of its age, both registered, then the bit read and registered
            address = Signal.like(spikes_read.addr, name=f"probe_address_{lane}")
            m.d.sync += address.eq(word((self.slot - self.probe_age[lane])[:slot_bits], probe_row_1))
            m.d.comb += [spikes_read.en.eq(1), spikes_read.addr.eq(address)]
            m.d.sync += self.probe_spikes[lane].eq(spikes_read.data)

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
            with m.Elif(clearing & (clear_addr < rows)):
                m.d.comb += [write.en.eq(1), write.addr.eq(clear_addr), write.data.eq(0)]
            m.d.comb += self.take_current[lane].eq(current_1)
        return m
