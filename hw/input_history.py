"""The input history: every input channel's event count of the last ``H`` steps (input delays)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

__all__ = ["InputHistory"]


class InputHistory(wiring.Component):
    """``C x H`` event counts of ``count_bits``, ``H = build.history_depth`` steps per channel.

    One memory, word ``c H + s`` (``H`` a power of two) the count of channel
    ``c`` at the step ``t`` with ``t mod H = s``. The current step's slot is
    ``slot``; an age ``a`` reads slot ``slot - a (mod H)``. Commands (one at
    a time, none while ``busy``):

    ``count_en`` with ``count_channel``
        one more event of the channel in the current step: a read, then on
        the next cycle the write of ``count + 1`` (saturating at
        ``2^count_bits - 1``; the model compiler refuses inputs that would
        reach it); ``busy`` during the write cycle. 2 cycles.
    ``read_en`` with ``read_channel``, ``read_age``
        ``read_data`` on the next cycle.
    ``zero_en`` with ``zero_channel``
        zero the channel's slot of the *next* step (``slot + 1``), which the
        oldest age ever read (``H - 2``) never reaches; may come in the same
        cycle as a ``read_en``.
    ``clear``
        every count to 0: ``C H`` cycles, ``busy`` meanwhile.

    Parameters
    ----------
    build : CoreBuild

    Attributes
    ----------
    slot : In(unsigned(log2 H))
    count_en, read_en, zero_en, clear : In(1)
    count_channel, read_channel, zero_channel : In(range(C))
    read_age : In(unsigned(log2 H))
    read_data : Out(unsigned(count_bits))
    busy : Out(1)
    """

    def __init__(self, build: CoreBuild):
        self._build = build
        slot_bits = (build.history_depth - 1).bit_length()
        super().__init__({
            "slot": In(slot_bits),
            "count_en": In(1),
            "count_channel": In(range(build.inputs)),
            "read_en": In(1),
            "read_channel": In(range(build.inputs)),
            "read_age": In(slot_bits),
            "read_data": Out(unsigned(build.spec.count_bits)),
            "zero_en": In(1),
            "zero_channel": In(range(build.inputs)),
            "clear": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        build = self._build
        H, C, bits = build.history_depth, build.inputs, build.spec.count_bits
        slot_bits = (H - 1).bit_length()
        m = Module()
        m.submodules.counts = counts = Memory(shape=unsigned(bits), depth=C * H, init=[])
        read = counts.read_port()
        write = counts.write_port()

        def word(channel, slot):
            return Cat(slot[:slot_bits], channel) if slot_bits else channel

        counting = Signal()                             # the write cycle of a count
        counting_addr = Signal.like(read.addr)
        clearing = Signal()
        clear_addr = Signal(range(C * H + 1))
        top = (1 << bits) - 1
        m.d.sync += counting.eq(self.count_en)
        with m.If(self.count_en):
            m.d.comb += read.addr.eq(word(self.count_channel, self.slot))
            m.d.sync += counting_addr.eq(read.addr)
        with m.Else():
            m.d.comb += read.addr.eq(word(self.read_channel, (self.slot - self.read_age)[:slot_bits]))
        m.d.comb += self.read_data.eq(read.data)
        with m.If(self.clear):
            m.d.sync += [clearing.eq(1), clear_addr.eq(0)]
        with m.Elif(clearing):
            m.d.sync += clear_addr.eq(clear_addr + 1)
            with m.If(clear_addr == C * H - 1):
                m.d.sync += clearing.eq(0)
        with m.If(clearing):
            m.d.comb += [write.en.eq(1), write.addr.eq(clear_addr), write.data.eq(0)]
        with m.Elif(counting):
            m.d.comb += [write.en.eq(1), write.addr.eq(counting_addr),
                         write.data.eq(Mux(read.data == top, top, read.data + 1))]
        with m.Elif(self.zero_en):
            m.d.comb += [write.en.eq(1), write.addr.eq(word(self.zero_channel, (self.slot + 1)[:slot_bits])),
                         write.data.eq(0)]
        m.d.comb += self.busy.eq(clearing | counting)
        return m
