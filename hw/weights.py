"""The input and recurrent weight memories: one single-port memory per lane, weights packed in words."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .banked import BankedMemory
from .fixed import check_bank_bits, delay_line
from .shared_memory import SHARED_WORD_BITS, SharedPort

__all__ = ["WeightMemory", "WEIGHT_READ_LATENCY", "WEIGHT_WORD_BITS", "weights_per_word"]

#: Cycles from a weight's read index to the weight (:class:`~delrec.hw.banked.BankedMemory`).
WEIGHT_READ_LATENCY = BankedMemory.LATENCY

#: Word width the input and recurrent weights are packed into: the iCE40
#: SPRAM's (16K x 16) and the iCE40 block RAM's widest mode (256 x 16).
WEIGHT_WORD_BITS = 16


def weights_per_word(weight_bits: int) -> int:
    """Weights packed into one word of the input and recurrent weight memories.

    The largest power of two whose weights fit :data:`WEIGHT_WORD_BITS` bits
    (1 for weights wider than half a word): two 8-bit weights per 16-bit word,
    so that the SHD-size weights fit the UP5K's four SPRAMs.
    """
    count = 1
    while 2 * count * weight_bits <= WEIGHT_WORD_BITS:
        count *= 2
    return count


class WeightMemory(wiring.Component):
    """``lanes`` memories of ``count`` weights each, packed :func:`weights_per_word` to a word.

    Built for single-port RAM (the iCE40 UP5K's SPRAM): a lane's read and
    write share one address, which comes straight from registers. Writes
    happen between steps, reads during them. A write of weight
    ``write_index[l]`` (``write_en[l]``) is registered and stored on the next
    cycle with a one-weight write enable (no read-modify-write); otherwise,
    with ``read_en``, weight ``read_index`` (the same for every lane) is read
    and appears on ``weight[l]`` :data:`WEIGHT_READ_LATENCY` cycles later, through a
    :class:`~delrec.hw.banked.BankedMemory` (in banks of ``bank_bits``).

    Parameters
    ----------
    count : int
        Weights per lane.
    lanes : int
    weight_bits : int
        Width of a weight (signed).
    bank_bits : int, optional
        Banks of at most this many bits (see :class:`~delrec.hw.banked.BankedMemory`).
    name : str
        Prefix of the lane memories (``<name>_<lane>``): the names
        :func:`delrec.hw.synth.mark_spram` recognises as single-port weights.
    shared : (int, int), optional
        ``(base, depth)``: one lane whose words live in a
        :class:`~delrec.hw.shared_memory.SharedMemory` of ``depth`` words
        from word ``base`` on (port ``shared``), instead of a memory of its own;
        the same latency (both read through two registers).

    Attributes
    ----------
    write_en : In(lanes)
    write_index : In(range(count))
    write_data : In(signed(weight_bits))
    read_index : In(range(count))
    read_en : In(1)
        Read ``read_index`` this cycle (low: nothing is read; a shared
        memory is then free for another array).
    weight : Out(ArrayLayout(signed(weight_bits), lanes))
    """

    def __init__(self, count: int, lanes: int, weight_bits: int, *, bank_bits: int | None = None,
                 name: str = "weights", shared: tuple | None = None):
        check_bank_bits(bank_bits)
        if shared is not None and (lanes != 1 or weights_per_word(weight_bits) * weight_bits != SHARED_WORD_BITS):
            raise ValueError(f"A weight memory in a shared memory has one lane of weights that pack a "
                             f"{SHARED_WORD_BITS}-bit word, not {lanes} lanes of {weight_bits}-bit weights")
        self._count, self._lanes, self._bits, self._bank_bits = count, lanes, weight_bits, bank_bits
        self._name, self._shared = name, shared
        members = {
            "write_en": In(lanes),
            "write_index": In(range(count)),
            "write_data": In(signed(weight_bits)),
            "read_index": In(range(count)),
            "read_en": In(1),
            "weight": Out(data.ArrayLayout(signed(weight_bits), lanes)),
        }
        if shared is not None:
            members["shared"] = Out(SharedPort(shared[1]))
        super().__init__(members)

    def elaborate(self, platform):
        bits, count = self._bits, self._count
        pack = weights_per_word(bits)
        pack_bits = pack.bit_length() - 1
        words = -(-count // pack)
        m = Module()
        writing = Signal(self._lanes)                    # the write, registered
        writing_index = Signal.like(self.write_index)
        writing_data = Signal.like(self.write_data)
        m.d.sync += [writing.eq(self.write_en), writing_index.eq(self.write_index),
                     writing_data.eq(self.write_data)]
        slot = delay_line(m, self.read_index[:pack_bits], WEIGHT_READ_LATENCY, "slot")[-1] \
            if pack > 1 else None
        for lane in range(self._lanes):
            if self._shared is not None:
                memory = _SharedLane(self.shared, self._shared[0], words, bits)
            else:
                memory = BankedMemory(shape=unsigned(pack * bits), depth=words, bank_bits=self._bank_bits,
                                      granularity=bits)
            m.submodules[f"{self._name}_{lane}"] = memory
            word = Signal(range(words), name=f"word_{lane}")   # the one address of reads and writes
            mine = writing[lane]
            m.d.comb += [
                word.eq(Mux(mine, writing_index >> pack_bits, self.read_index >> pack_bits)),
                memory.write_addr.eq(word),
                memory.read_addr.eq(word),
                memory.read_en.eq(self.read_en & ~mine),
                memory.write_data.eq(Cat(*[writing_data] * pack)),
                memory.write_en.eq(Mux(mine, 1 << writing_index[:pack_bits], 0) if pack > 1 else mine),
            ]
            if pack > 1:   # the weight's place in its word, delayed as the word is
                m.d.comb += self.weight[lane].eq(memory.read_data.word_select(slot, bits))
            else:
                m.d.comb += self.weight[lane].eq(memory.read_data)
        return m


class _SharedLane(wiring.Component):
    """A :class:`~delrec.hw.banked.BankedMemory`-like face on a shared memory's port (one lane)."""

    def __init__(self, port, base: int, words: int, granularity: int):
        self._port, self._base, self._granularity = port, base, granularity
        super().__init__({
            "write_addr": In(range(words)),
            "write_data": In(SHARED_WORD_BITS),
            "write_en": In(SHARED_WORD_BITS // granularity),
            "read_addr": In(range(words)),
            "read_en": In(1),
            "read_data": Out(SHARED_WORD_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        nibbles = self._granularity // 4
        writing = self.write_en.any()
        m.d.comb += [
            self._port.addr.eq(self._base + Mux(writing, self.write_addr, self.read_addr)),
            self._port.read_en.eq(self.read_en),
            self._port.write_en.eq(Cat(*[bit.replicate(nibbles) for bit in self.write_en])),
            self._port.write_data.eq(self.write_data),
            self.read_data.eq(self._port.read_data),
        ]
        return m
