"""The input history: every input channel's event count of the last ``H`` steps (input delays)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .fixed import delay_line, sweep
from .shared_memory import SHARED_LATENCY, SHARED_WORD_BITS, SharedPort

__all__ = ["InputHistory"]


class InputHistory(wiring.Component):
    """``C x H`` event counts of ``count_bits``, ``H = build.history_depth`` steps per channel.

    Entry ``c H + s`` (``H`` a power of two) is the count of channel ``c`` at
    the step ``t`` with ``t mod H = s``; the current step's slot is
    ``slot``, an age ``a`` reads slot ``slot - a (mod H)``. The counts live in
    a memory of their own (one per word, reads in :attr:`latency` = 1 cycle)
    or, with ``shared``, four to a word of a
    :class:`~delrec.hw.shared_memory.SharedMemory` (``latency`` =
    :data:`~delrec.hw.shared_memory.SHARED_LATENCY`). Commands, one at a time
    and none while ``busy``:

    ``count_en`` with ``count_channel``
        one more event of the channel in the current step: a read, then
        ``latency`` cycles later the write of ``count + 1`` (saturating at
        ``2^count_bits - 1``; the model compiler refuses inputs that would
        reach it); ``busy`` until the cycle of that write (the next command
        may follow on the cycle after): ``latency + 1`` cycles.
    ``read_en`` with ``read_channel``, ``read_age``
        ``read_data`` with a ``read_valid`` pulse ``latency`` cycles later
        (held until the next read's).
    ``zero_en`` with ``zero_channel``
        zero the channel's slot of the *next* step (``slot + 1``), which the
        oldest age ever read (``H - 2``) never reaches; not on the cycle of
        another command.
    ``clear``
        every count to 0: ``C H`` cycles (``C H / 4`` shared), ``busy`` meanwhile.

    Parameters
    ----------
    build : CoreBuild
    shared : (int, int), optional
        ``(base, depth)``: the counts live in a shared memory of ``depth``
        words from word ``base`` on (port ``shared``).
    """

    def __init__(self, build: CoreBuild, *, shared: tuple | None = None):
        self._build, self._shared = build, shared
        per_word = SHARED_WORD_BITS // 4
        if shared is not None and build.spec.count_bits > 4:
            raise ValueError(f"A shared input history keeps counts of at most 4 bits, not "
                             f"{build.spec.count_bits}")
        self.latency = 1 if shared is None else SHARED_LATENCY
        self.words = -(-build.inputs * build.history_depth // per_word)
        slot_bits = (build.history_depth - 1).bit_length()
        members = {
            "slot": In(slot_bits),
            "count_en": In(1),
            "count_channel": In(range(build.inputs)),
            "read_en": In(1),
            "read_channel": In(range(build.inputs)),
            "read_age": In(slot_bits),
            "read_data": Out(unsigned(build.spec.count_bits)),
            "read_valid": Out(1),
            "zero_en": In(1),
            "zero_channel": In(range(build.inputs)),
            "clear": In(1),
            "busy": Out(1),
        }
        if shared is not None:
            members["shared"] = Out(SharedPort(shared[1]))
        super().__init__(members)

    def elaborate(self, platform):
        build = self._build
        H, C, bits = build.history_depth, build.inputs, build.spec.count_bits
        slot_bits = (H - 1).bit_length()
        latency = self.latency
        shared = self._shared is not None
        m = Module()
        top = (1 << bits) - 1

        def entry(channel, slot):
            return Cat(slot[:slot_bits], channel) if slot_bits else channel

        counting = delay_line(m, self.count_en, latency, "counting")
        read_entry = Signal(range(C * H))
        m.d.comb += read_entry.eq(Mux(self.count_en, entry(self.count_channel, self.slot),
                                      entry(self.read_channel, (self.slot - self.read_age)[:slot_bits])))
        entries = delay_line(m, read_entry, latency, "read_entry")
        reading = delay_line(m, self.read_en, latency, "reading")
        zero_entry = entry(self.zero_channel, (self.slot + 1)[:slot_bits])
        clearing, clear_addr = sweep(m, self.clear, self.words if shared else C * H, "clear")
        # busy up to the cycle of the count's write: the next command may follow it
        m.d.comb += self.busy.eq(clearing | self.count_en | Cat(*counting[:-1]).any())

        if shared:
            port, base = self.shared, self._shared[0]
            count = port.read_data.word_select(entries[-1][:2], 4)[:bits]
            write_en, write_entry, write_value = Signal(), Signal.like(read_entry), Signal(bits)
            with m.If(clearing):
                m.d.comb += [port.addr.eq(base + clear_addr), port.write_en.eq(0b1111), port.write_data.eq(0)]
            with m.Elif(write_en):
                m.d.comb += [port.addr.eq(base + (write_entry >> 2)),
                             port.write_en.eq(Const(1, 4) << write_entry[:2]),
                             port.write_data.eq(Cat(*[Cat(write_value, Const(0, 4 - bits))] * 4)
                                                if bits < 4 else Cat(*[write_value] * 4))]
            with m.Elif(self.count_en | self.read_en):
                m.d.comb += [port.addr.eq(base + (read_entry >> 2)), port.read_en.eq(1)]
        else:
            m.submodules.counts = counts = Memory(shape=unsigned(bits), depth=C * H, init=[])
            read, write = counts.read_port(), counts.write_port()
            count = read.data
            m.d.comb += read.addr.eq(read_entry)
            with m.If(clearing):
                m.d.comb += [write.en.eq(1), write.addr.eq(clear_addr), write.data.eq(0)]
        # the count's write, or the next slot's zero
        target = Mux(counting[-1], entries[-1], zero_entry)
        value = Mux(counting[-1], Mux(count == top, top, count + 1), 0)
        enable = counting[-1] | self.zero_en
        if shared:
            m.d.comb += [write_en.eq(enable & ~clearing), write_entry.eq(target), write_value.eq(value)]
        else:
            with m.If(enable & ~clearing):
                m.d.comb += [write.en.eq(1), write.addr.eq(target), write.data.eq(value)]
        data = Signal(bits)
        with m.If(reading[-1]):
            m.d.sync += data.eq(count)
        m.d.comb += [self.read_valid.eq(reading[-1]), self.read_data.eq(Mux(reading[-1], count, data))]
        return m
