"""The host link's frame counters (what ``STATS`` replies), kept in the link's buffer."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from delrec.wire import STATS_COUNTERS, Status

from .link_buffer import BUFFER_READ, BUFFER_WRITE, COUNTER_BYTES, STATS_BASE

__all__ = ["COUNTED", "FrameCounters"]

#: The counters of :data:`~delrec.wire.STATS_COUNTERS` that a frame of each status adds 1 to
#: (a request refused while a step is open is a bad command).
COUNTED = {
    Status.OK: ("frames_ok",),
    Status.BAD_CRC: ("frames_bad", "bad_crc"),
    Status.TRUNCATED: ("frames_bad", "truncated"),
    Status.BAD_COMMAND: ("frames_bad", "bad_command"),
    Status.BAD_LENGTH: ("frames_bad", "bad_length"),
    Status.STEP_OPEN: ("frames_bad", "bad_command"),
}

_LAST_BYTE = len(STATS_COUNTERS) * COUNTER_BYTES - 1


class FrameCounters(wiring.Component):
    """Counts frames by status in u32 counters that live in the link's buffer.

    After reset the counters (:data:`~delrec.wire.STATS_COUNTERS`,
    :data:`~delrec.hw.link_buffer.COUNTER_BYTES` bytes each, little endian,
    from :data:`~delrec.hw.link_buffer.STATS_BASE`) are zeroed, a byte per
    cycle. A status on ``frame`` marks the counters of :data:`COUNTED` for
    that status; they are then incremented (wrapping) in the cycles that
    ``enable`` is asserted, a byte per cycle read and written back with its
    carry: ``COUNTER_BYTES + 1`` cycles per counter, the lowest first.

    ``idle`` is low while a count is pending. After reset it rises in the
    cycle that zeroes the last counter byte (so that a part that waits for
    it goes on from the next cycle, when the counters are zero); after a
    frame it rises the cycle after the last counter is written.

    Attributes
    ----------
    frame : In(stream.Signature(8, always_ready=True))
        The :class:`~delrec.wire.Status` of a frame to count (one cycle, while ``idle``).
    enable : In(1)
        The buffer is the counters' this cycle.
    buffer_write : Out(BUFFER_WRITE)
    buffer_read : Out(BUFFER_READ)
        The counters' ports of the link's buffer.
    idle : Out(1)
        No count pending.
    """

    def __init__(self):
        super().__init__({
            "frame": In(stream.Signature(8, always_ready=True)),
            "enable": In(1),
            "buffer_write": Out(BUFFER_WRITE),
            "buffer_read": Out(BUFFER_READ),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        write, read = self.buffer_write, self.buffer_read
        pending = Signal(len(STATS_COUNTERS))                   # counters still to increment
        index = Signal(range(len(STATS_COUNTERS)))              # the lowest of them
        for bit in reversed(range(len(STATS_COUNTERS))):
            with m.If(pending[bit]):
                m.d.comb += index.eq(bit)
        base = Signal(len(write.addr))
        m.d.comb += base.eq(STATS_BASE + index * COUNTER_BYTES)
        byte = Signal(range(COUNTER_BYTES + 1))                # byte read now; the one before is written
        carry = Signal()
        zero_pointer = Signal(range(_LAST_BYTE + 1))

        with m.FSM(name="counters", init="ZERO"):
            with m.State("ZERO"):
                m.d.comb += [write.en.eq(1), write.addr.eq(STATS_BASE + zero_pointer), write.data.eq(0),
                             self.idle.eq(zero_pointer == _LAST_BYTE)]
                m.d.sync += zero_pointer.eq(zero_pointer + 1)
                with m.If(zero_pointer == _LAST_BYTE):
                    m.next = "COUNT"

            with m.State("COUNT"):
                m.d.comb += self.idle.eq(pending == 0)
                with m.If(self.enable & (pending != 0)):
                    with m.If(byte != COUNTER_BYTES):
                        m.d.comb += [read.en.eq(1), read.addr.eq(base + byte)]
                    with m.If(byte == 0):
                        m.d.sync += carry.eq(1)
                    with m.Else():
                        m.d.comb += [write.en.eq(1), write.addr.eq(base + byte - 1),
                                     write.data.eq(read.data + carry)]
                        m.d.sync += carry.eq(carry & (read.data == 0xFF))
                    m.d.sync += byte.eq(byte + 1)
                    with m.If(byte == COUNTER_BYTES):
                        done = Const(1, len(STATS_COUNTERS)) << index
                        m.d.sync += [byte.eq(0), pending.eq(pending & ~done)]
                with m.If(self.frame.valid):
                    with m.Switch(self.frame.payload):
                        for status, names in COUNTED.items():
                            with m.Case(status):
                                m.d.sync += pending.eq(sum(1 << STATS_COUNTERS.index(name)
                                                           for name in names))
        return m
