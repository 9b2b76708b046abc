"""The host link's buffer: one block RAM that the link's parts take turns with.

The map (bytes): a request's payload from 0 (at most
:data:`~delrec.wire.MAX_PAYLOAD` bytes), a ``STEP`` reply's spike bitmap from
0 too (the request's payload is used up by then), and the frame counters
(:data:`~delrec.wire.STATS_COUNTERS`, :data:`COUNTER_BYTES` each, little
endian) from :data:`STATS_BASE`.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from delrec.wire import MAX_PAYLOAD, STATS_COUNTERS

__all__ = ["BUFFER_BYTES", "BUFFER_ADDR_BITS", "STATS_BASE", "COUNTER_BYTES", "BUFFER_WRITE", "BUFFER_READ",
           "LinkBuffer"]

#: Bytes of the buffer: one iCE40 block RAM of 512 x 8.
BUFFER_BYTES = 512
BUFFER_ADDR_BITS = (BUFFER_BYTES - 1).bit_length()
#: Address of the first frame counter (past any payload and bitmap).
STATS_BASE = 256
#: Bytes of each frame counter (u32 little endian, in the order of STATS_COUNTERS).
COUNTER_BYTES = 4

assert MAX_PAYLOAD <= STATS_BASE and STATS_BASE + len(STATS_COUNTERS) * COUNTER_BYTES <= BUFFER_BYTES

#: A part's write port: ``en``, ``addr`` and ``data`` out (written at the clock edge).
BUFFER_WRITE = wiring.Signature({"en": Out(1), "addr": Out(BUFFER_ADDR_BITS), "data": Out(8)})
#: A part's read port: ``en`` and ``addr`` out; ``data`` in, the cycle after (held while ``en`` is low).
BUFFER_READ = wiring.Signature({"en": Out(1), "addr": Out(BUFFER_ADDR_BITS), "data": In(8)})


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    return value


class LinkBuffer(wiring.Component):
    """A :data:`BUFFER_BYTES` x 8 :class:`~amaranth.lib.memory.Memory` with a port per part.

    The memory has one write port and one synchronous read port (one iCE40
    block RAM). Each part of the link gets its own :data:`BUFFER_WRITE` and
    :data:`BUFFER_READ` ports here; a part drives ``en``, ``addr`` and
    ``data`` only while it uses the buffer (they are 0 otherwise), and the
    link runs its parts so that no two use the buffer in the same cycle, so
    the parts' ports are ORed onto the memory's. Every read port sees the
    memory's read data.

    Timing: a write takes effect at the clock edge; read data appears the
    cycle after ``en`` and ``addr`` and is held while no read is enabled.
    The contents are undefined after reset (the parts initialise what they
    use).

    Parameters
    ----------
    writers : int
        The number of write ports.
    readers : int
        The number of read ports.

    Attributes
    ----------
    write : In(BUFFER_WRITE).array(writers)
        The parts' write ports.
    read : In(BUFFER_READ).array(readers)
        The parts' read ports.
    """

    def __init__(self, *, writers: int, readers: int):
        self.writers = _check_count("Writer count", writers)
        self.readers = _check_count("Reader count", readers)
        super().__init__({"write": In(BUFFER_WRITE).array(writers), "read": In(BUFFER_READ).array(readers)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = memory = Memory(shape=8, depth=BUFFER_BYTES, init=[])
        write = memory.write_port()
        read = memory.read_port()
        for port, users in ((write, self.write), (read, self.read)):
            m.d.comb += [port.en.eq(reduce(or_, [user.en for user in users])),
                         port.addr.eq(reduce(or_, [user.addr for user in users]))]
        m.d.comb += write.data.eq(reduce(or_, [user.data for user in self.write]))
        m.d.comb += [user.data.eq(read.data) for user in self.read]
        return m
