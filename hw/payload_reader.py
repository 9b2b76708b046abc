"""The host link's payload reader: a request's payload in the link's buffer -> its elements."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from delrec.wire import REQUEST_RULES

from .link_buffer import BUFFER_READ

__all__ = ["ELEMENT_BITS", "PAYLOAD_START", "PAYLOAD_ELEMENT", "PayloadReader"]

#: Bits of the largest element of a request's payload (:data:`~delrec.wire.REQUEST_RULES`).
ELEMENT_BITS = 8 * max(size for size, _, _ in REQUEST_RULES.values())
#: Starts reading a payload: its element size in bytes (at least 1) and its length (at least 1).
PAYLOAD_START = data.StructLayout({"size": range(ELEMENT_BITS // 8 + 1), "length": 8})
#: One element: its bytes, little endian, in the top ``8 * size`` bits of ``data`` (the bits
#: below them are left over from earlier elements); ``last``: the payload's last element.
PAYLOAD_ELEMENT = data.StructLayout({"data": ELEMENT_BITS, "last": 1})


class PayloadReader(wiring.Component):
    """Reads a payload from the buffer (from address 0), an element at a time.

    ``start`` is taken while the reader is idle (the executor starts it only
    then). The reader fetches ``size`` bytes, one per cycle (the buffer's
    data comes the cycle after its address), and offers the element on
    ``element``; once the element is taken it fetches the next one, until
    ``length`` bytes have been read. Elements are not fetched ahead: the
    user of an element decides when the next one is fetched.

    Timing: an element is valid ``size + 1`` cycles after the edge that
    takes ``start`` or the previous element; the reader is idle again from
    the edge that takes the last one.

    Attributes
    ----------
    start : In(stream.Signature(PAYLOAD_START, always_ready=True))
        Starts reading a payload.
    element : Out(stream.Signature(PAYLOAD_ELEMENT))
        The payload's elements.
    buffer : Out(BUFFER_READ)
        The reader's port of the link's buffer.
    """

    def __init__(self):
        super().__init__({
            "start": In(stream.Signature(PAYLOAD_START, always_ready=True)),
            "element": Out(stream.Signature(PAYLOAD_ELEMENT)),
            "buffer": Out(BUFFER_READ),
        })

    def elaborate(self, platform):
        m = Module()
        size = Signal.like(self.start.payload.size)
        length = Signal(8)
        pointer = Signal(8)                 # buffer address of the next byte to fetch
        fetch_left = Signal.like(size)      # bytes of the current element not yet fetched
        fetched = Signal()                  # the buffer's data is a byte fetched last cycle
        element = Signal(ELEMENT_BITS)      # the element's bytes, the last fetched at the top
        m.d.comb += [self.element.payload.data.eq(element), self.element.payload.last.eq(pointer == length)]

        with m.FSM(name="reader"):
            with m.State("IDLE"):
                with m.If(self.start.valid):
                    m.d.sync += [size.eq(self.start.payload.size), length.eq(self.start.payload.length),
                                 pointer.eq(0), fetch_left.eq(self.start.payload.size)]
                    m.next = "FETCH"

            with m.State("FETCH"):
                m.d.comb += [self.buffer.en.eq(1), self.buffer.addr.eq(pointer)]
                m.d.sync += fetched.eq(fetch_left != 0)
                with m.If(fetch_left != 0):
                    m.d.sync += [pointer.eq(pointer + 1), fetch_left.eq(fetch_left - 1)]
                with m.If(fetched):
                    m.d.sync += element.eq(Cat(element[8:], self.buffer.data))
                    with m.If(fetch_left == 0):
                        m.next = "OFFER"

            with m.State("OFFER"):
                m.d.comb += self.element.valid.eq(1)
                with m.If(self.element.ready):
                    m.next = "IDLE"
                    with m.If(pointer != length):
                        m.d.sync += fetch_left.eq(size)
                        m.next = "FETCH"
        return m
