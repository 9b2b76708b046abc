"""The host link's transmitter: a reply's header and body -> a framed byte stream with its CRC."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from delrec.wire import CRC16_INIT, SYNC

from .crc import crc16_next

__all__ = ["REPLY_HEADER", "ReplyFramer"]

#: What starts a reply: its command byte, its length (the status byte and
#: the body) and its status byte.
REPLY_HEADER = data.StructLayout({"command": 8, "length": 8, "status": 8})


class ReplyFramer(wiring.Component):
    """Sends ``0xA5 | command | length | status | body | crc16`` on ``tx`` (:mod:`delrec.wire`).

    ``header`` is taken only while the framer is idle (``header.ready`` is
    that: a part that starts a reply only when the framer is idle may
    assert ``valid`` without waiting for ``ready``). The framer then sends
    the sync byte, the command, the length and the status; the
    ``length - 1`` body bytes after the status are passed from ``body`` to
    ``tx`` as they come (``body.ready`` is ``tx.ready`` while the body is
    being sent, 0 otherwise); then the CRC-16 of command, length, status
    and body, high byte first. ``tx.valid`` never waits for ``tx.ready``.

    Timing: with ``tx`` always ready, the sync byte leaves on the edge after
    the one that takes the header, then a byte every cycle (the body's bytes
    as soon as ``body`` offers them); the framer is idle (``header.ready``)
    from the edge that sends the CRC's low byte on.

    Attributes
    ----------
    header : In(stream.Signature(REPLY_HEADER))
        Starts a reply (``length`` at least 1: the status byte).
    body : In(stream.Signature(8))
        The reply's bytes after its status.
    tx : Out(stream.Signature(8))
        The frame's bytes.
    """

    def __init__(self):
        super().__init__({
            "header": In(stream.Signature(REPLY_HEADER)),
            "body": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        command = Signal(8)
        length = Signal(8)
        status = Signal(8)
        left = Signal(8)                    # body bytes still to send
        crc = Signal(16)
        tx_fire = Signal()
        in_crc = Signal()                   # the byte offered is covered by the CRC
        m.d.comb += tx_fire.eq(self.tx.valid & self.tx.ready)
        with m.If(tx_fire & in_crc):
            m.d.sync += crc.eq(crc16_next(crc, self.tx.payload))

        def send(byte, next_state, covered=True):
            m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte), in_crc.eq(covered)]
            with m.If(self.tx.ready):
                m.next = next_state

        with m.FSM(name="framer"):
            with m.State("IDLE"):
                m.d.comb += self.header.ready.eq(1)
                with m.If(self.header.valid):
                    header = self.header.payload
                    m.d.sync += [command.eq(header.command), length.eq(header.length),
                                 status.eq(header.status), left.eq(header.length - 1), crc.eq(CRC16_INIT)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                send(SYNC, "COMMAND", covered=False)
            with m.State("COMMAND"):
                send(command, "LENGTH")
            with m.State("LENGTH"):
                send(length, "STATUS")
            with m.State("STATUS"):
                with m.If(left != 0):
                    send(status, "BODY")
                with m.Else():
                    send(status, "CRC_HIGH")
            with m.State("BODY"):
                m.d.comb += [self.tx.valid.eq(self.body.valid), self.tx.payload.eq(self.body.payload),
                             self.body.ready.eq(self.tx.ready), in_crc.eq(1)]
                with m.If(tx_fire):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "CRC_HIGH"
            with m.State("CRC_HIGH"):
                send(crc[8:], "CRC_LOW", covered=False)
            with m.State("CRC_LOW"):
                send(crc[:8], "IDLE", covered=False)
        return m
