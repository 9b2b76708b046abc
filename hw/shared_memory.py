"""One single-port memory of 16-bit words shared by several arrays (the iCE40 UP5K's SPRAM)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["SharedMemory", "SharedPort", "SHARED_WORD_BITS", "SHARED_LATENCY"]

#: Width of a shared word: the SPRAM's.
SHARED_WORD_BITS = 16

#: Cycles from a read request to its word: the memory's synchronous read and two registers, the
#: latency of every weight memory of the core (:data:`~delrec.hw.weights.WEIGHT_READ_LATENCY`).
SHARED_LATENCY = 3


class SharedPort(wiring.Signature):
    """One client's access to a :class:`SharedMemory` (client side: ``Out`` are requests).

    ``addr`` (a word), ``read_en``, ``write_en`` (one enable per 4 bits, the
    SPRAM's nibble mask), ``write_data``; ``read_data`` is the word read
    :data:`SHARED_LATENCY` cycles after ``read_en``.
    """

    def __init__(self, depth: int):
        super().__init__({
            "addr": Out(range(depth)),
            "read_en": Out(1),
            "write_en": Out(SHARED_WORD_BITS // 4),
            "write_data": Out(SHARED_WORD_BITS),
            "read_data": In(SHARED_WORD_BITS),
        })


class SharedMemory(wiring.Component):
    """``depth`` words of 16 bits with one address for reads and writes, for ``clients`` users.

    Several arrays of the core live in it, each at its own base address; the
    core guarantees that at most one client requests on any cycle (their
    passes never overlap), and the lowest-numbered requesting client wins.
    One access per cycle: a write (with nibble enables) or a read, whose word
    appears on every client's ``read_data`` :data:`SHARED_LATENCY` cycles
    later. The memory is named ``<name>_shared``, which
    :func:`delrec.hw.synth.mark_spram` places in SPRAM.

    Parameters
    ----------
    depth : int
    clients : int
    name : str

    Attributes
    ----------
    port_<n> : In(SharedPort(depth))
    """

    def __init__(self, depth: int, clients: int, *, name: str = "weights"):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"Shared memory depth must be a positive integer, not {depth!r}")
        if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
            raise ValueError(f"Client count must be a positive integer, not {clients!r}")
        self._depth, self._clients, self._name = depth, clients, name
        super().__init__({f"port_{n}": In(SharedPort(depth)) for n in range(clients)})

    def elaborate(self, platform):
        m = Module()
        memory = Memory(shape=unsigned(SHARED_WORD_BITS), depth=self._depth, init=[])
        m.submodules[f"{self._name}_shared"] = memory
        write = memory.write_port(granularity=4)
        read = memory.read_port()
        ports = [getattr(self, f"port_{n}") for n in range(self._clients)]
        addr = ports[-1].addr
        enables = ports[-1].write_en
        data_in = ports[-1].write_data
        for port in reversed(ports[:-1]):   # the lowest-numbered requesting client wins
            active = port.read_en | port.write_en.any()
            addr = Mux(active, port.addr, addr)
            enables = Mux(active, port.write_en, enables)
            data_in = Mux(active, port.write_data, data_in)
        writing = enables.any()
        m.d.comb += [write.addr.eq(addr), read.addr.eq(addr), write.en.eq(enables), write.data.eq(data_in),
                     read.en.eq(~writing)]
        word_1, word_2 = Signal(SHARED_WORD_BITS), Signal(SHARED_WORD_BITS)
        m.d.sync += [word_1.eq(read.data), word_2.eq(word_1)]
        for port in ports:
            m.d.comb += port.read_data.eq(word_2)
        return m
