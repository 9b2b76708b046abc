"""The host link's reply bodies: buffer bytes, PING's bytes or a READ's u32, byte by byte."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from delrec.wire import READ_DATA_BITS

from .link_buffer import BUFFER_ADDR_BITS, BUFFER_READ

__all__ = ["BUFFER_RANGE", "ReplyBody"]

#: Buffer bytes to send: the addresses of the first and the last.
BUFFER_RANGE = data.StructLayout({"first": BUFFER_ADDR_BITS, "last": BUFFER_ADDR_BITS})


class ReplyBody(wiring.Component):
    """Sends a reply's body (its bytes after the status) on ``body``, from one of three sources.

    A start is taken while the sender is idle (the executor starts one only
    then, and one at a time):

    ``send_buffer``
        the buffer's bytes ``first..last`` (a spike bitmap, the frame
        counters): 2 cycles per byte, the buffer's data coming the cycle
        after its address;
    ``send_ping``
        the bytes of ``ping``, 1 cycle per byte;
    ``send_value``
        a u32, little endian (a READ's value), 1 cycle per byte.

    Timing: the first byte is offered in the cycle after the start (the
    cycle after that for the buffer), the next in the cycle after a byte is
    taken (two cycles after, for the buffer). ``done`` is asserted in the
    cycle that ``body`` takes the last byte; the sender is idle from the
    next.

    Parameters
    ----------
    ping : bytes
        PING's reply after its status byte (:func:`delrec.wire.encode_ping`).

    Attributes
    ----------
    send_buffer : In(stream.Signature(BUFFER_RANGE, always_ready=True))
    send_ping : In(stream.Signature(0, always_ready=True))
    send_value : In(stream.Signature(READ_DATA_BITS, always_ready=True))
        Start a body.
    buffer : Out(BUFFER_READ)
        The sender's port of the link's buffer.
    body : Out(stream.Signature(8))
        The body's bytes.
    done : Out(1)
        The body's last byte is taken.
    """

    def __init__(self, ping: bytes):
        if not isinstance(ping, bytes) or not ping:
            raise TypeError(f"PING's reply must be non-empty bytes, not {ping!r}")
        self.ping = ping
        super().__init__({
            "send_buffer": In(stream.Signature(BUFFER_RANGE, always_ready=True)),
            "send_ping": In(stream.Signature(0, always_ready=True)),
            "send_value": In(stream.Signature(READ_DATA_BITS, always_ready=True)),
            "buffer": Out(BUFFER_READ),
            "body": Out(stream.Signature(8)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ping, body = self.ping, self.body
        pointer = Signal(BUFFER_ADDR_BITS)      # buffer address of the next byte
        last = Signal(BUFFER_ADDR_BITS)         # ... and of the last one
        index = Signal(range(max(len(ping), READ_DATA_BITS // 8)))   # PING's or the value's byte
        value = Signal(READ_DATA_BITS)

        def send(byte, last_byte):
            m.d.comb += [body.valid.eq(1), body.payload.eq(byte)]
            with m.If(body.ready):
                m.d.sync += index.eq(index + 1)
                with m.If(last_byte):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        with m.FSM(name="body"):
            with m.State("IDLE"):
                m.d.sync += index.eq(0)
                with m.If(self.send_buffer.valid):
                    m.d.sync += [pointer.eq(self.send_buffer.payload.first),
                                 last.eq(self.send_buffer.payload.last)]
                    m.next = "BUFFER_FETCH"
                with m.If(self.send_ping.valid):
                    m.next = "PING"
                with m.If(self.send_value.valid):
                    m.d.sync += value.eq(self.send_value.payload)
                    m.next = "VALUE"

            with m.State("BUFFER_FETCH"):
                m.d.comb += [self.buffer.en.eq(1), self.buffer.addr.eq(pointer)]
                m.next = "BUFFER_PUSH"

            with m.State("BUFFER_PUSH"):
                m.d.comb += [body.valid.eq(1), body.payload.eq(self.buffer.data)]
                with m.If(body.ready):
                    m.d.sync += pointer.eq(pointer + 1)
                    m.next = "BUFFER_FETCH"
                    with m.If(pointer == last):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"

            with m.State("PING"):
                send(Const(int.from_bytes(ping, "little"), 8 * len(ping)).word_select(index, 8),
                     index == len(ping) - 1)

            with m.State("VALUE"):
                send(value.word_select(index[:2], 8), index == READ_DATA_BITS // 8 - 1)
        return m
