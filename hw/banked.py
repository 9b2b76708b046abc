"""A deep memory read through registers, optionally split into banks of one block RAM."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .fixed import check_bank_bits, words_per_bank

__all__ = ["BankedMemory"]


class BankedMemory(wiring.Component):
    """``depth`` words of ``shape``, whose reads are registered twice before anyone uses them.

    A block RAM's output is slow (most of a 100 MHz cycle on an ECP5), and a
    memory deeper than one block RAM adds a multiplexer over the blocks
    behind it. This memory therefore registers what it read (stage 2) and,
    with ``bank_bits``, is built as banks of at most that many bits (a power
    of two of words each, see :func:`~delrec.hw.fixed.words_per_bank`),
    each bank's word registered before the bank is chosen and the chosen
    word registered again (stage 3). Without banks the word is registered
    twice, so the latency is :attr:`LATENCY` either way and a design behaves
    the same, cycle for cycle, with or without banks.

    Parameters
    ----------
    shape : Shape
        Shape of a word.
    depth : int
        Words.
    bank_bits : int, optional
        Largest bank in bits (a power of two), or ``None`` for one memory
        (the iCE40 SPRAM needs a whole one).
    granularity : int, optional
        Write granularity in bits: ``write_en`` has one bit per
        ``granularity`` bits of the word (byte enables, as the SPRAM has).

    Attributes
    ----------
    write_addr : In(range(depth))
    write_data : In(shape)
    write_en : In(1 or width // granularity)
    read_addr : In(range(depth))
    read_en : In(1)
        Read ``read_addr`` this cycle (low: the memories keep their outputs).
    read_data : Out(shape)
        The word read :attr:`LATENCY` cycles before.
    """

    #: Cycles from ``read_addr`` to ``read_data``.
    LATENCY = 3

    def __init__(self, *, shape, depth: int, bank_bits: int | None = None, granularity: int | None = None):
        check_bank_bits(bank_bits)
        shape = Shape.cast(shape)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"Memory depth must be a positive integer, not {depth!r}")
        if granularity is not None and (granularity < 1 or shape.width % granularity):
            raise ValueError(f"Write granularity must divide the word width {shape.width}, "
                             f"not {granularity!r}")
        self._shape, self._depth, self._granularity = shape, depth, granularity
        self.bank_words = words_per_bank(depth, shape.width, bank_bits)
        self.banks = -(-depth // self.bank_words)
        enables = 1 if granularity is None else shape.width // granularity
        super().__init__({
            "write_addr": In(unsigned(max(1, (depth - 1).bit_length()))),
            "write_data": In(shape),
            "write_en": In(enables),
            "read_addr": In(unsigned(max(1, (depth - 1).bit_length()))),
            "read_en": In(1),
            "read_data": Out(shape),
        })

    def elaborate(self, platform):
        m = Module()
        banked = self.banks > 1
        bank_bits = (self.bank_words - 1).bit_length()
        bank_reads = []
        for bank in range(self.banks):
            depth = min(self.bank_words, self._depth - bank * self.bank_words)
            memory = Memory(shape=self._shape, depth=depth, init=[])
            m.submodules[f"bank{bank}" if banked else "words"] = memory
            write = memory.write_port(granularity=self._granularity)
            read = memory.read_port()
            chosen = (self.write_addr >> bank_bits) == bank if banked else 1
            m.d.comb += [
                write.addr.eq(self.write_addr[:bank_bits] if banked else self.write_addr),
                write.data.eq(self.write_data),
                write.en.eq(Mux(chosen, self.write_en, 0)),
                read.addr.eq(self.read_addr[:bank_bits] if banked else self.read_addr),
                read.en.eq(self.read_en),
            ]
            bank_read = Signal(self._shape, name=f"bank{bank}_read")
            m.d.sync += bank_read.eq(read.data)
            bank_reads.append(bank_read)
        read_bank = [Signal(range(self.banks), name=f"read_bank_{n}") for n in (1, 2)]
        m.d.sync += [read_bank[0].eq(self.read_addr >> bank_bits if banked else 0),
                     read_bank[1].eq(read_bank[0])]
        if banked:
            with m.Switch(read_bank[1]):
                for bank, bank_read in enumerate(bank_reads):
                    with m.Case(bank):
                        m.d.sync += self.read_data.eq(bank_read)
        else:
            m.d.sync += self.read_data.eq(bank_reads[0])
        return m
