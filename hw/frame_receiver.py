"""The host link's receiver: request bytes -> checked frames, their payload in the link's buffer."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from delrec.wire import CRC16_INIT, MAX_PAYLOAD, REQUEST_RULES, SYNC, Command, Status

from .crc import crc16_next
from .link_buffer import BUFFER_WRITE

__all__ = ["DECODED_FRAME", "COMMAND_COUNT", "STEP_CLOSED_COMMANDS", "element_count", "FrameReceiver"]

#: What the receiver makes of a frame: its command and length bytes and its
#: :class:`~delrec.wire.Status` (``OK``: a good request; else why it is refused).
DECODED_FRAME = data.StructLayout({"command": 8, "length": 8, "status": 8})
#: Number of request codes: codes at or above it are unknown commands.
COMMAND_COUNT = len(Command)
#: The requests the core cannot take while a step is open (after ``EVENTS``, until ``STEP``).
STEP_CLOSED_COMMANDS = (Command.WRITE, Command.CLEAR, Command.READ)


def element_count(length: Value, size: int) -> Value:
    """The whole elements of ``size`` bytes in ``length`` bytes (a frame's length), without a divider.

    ``size`` is a power of two or 3 (the sizes of :data:`~delrec.wire.REQUEST_RULES`);
    ``length`` is at most 8 bits (``length * 171 >> 9`` is ``length // 3`` below 512).
    """
    if size & (size - 1) == 0:
        return length >> (size.bit_length() - 1)
    if size == 3:
        return (length * 171) >> 9
    raise ValueError(f"Element size must be a power of two or 3, not {size}")


def _length_fits(code: Command, length: Value) -> Value:
    """Whether a request ``code`` may have ``length`` payload bytes (:data:`~delrec.wire.REQUEST_RULES`)."""
    size, low, high = REQUEST_RULES[code]
    if size == 0:
        return length == 0
    count = element_count(length, size)
    fits = count * size == length
    if low > 0:
        fits &= count >= low
    if high < MAX_PAYLOAD // size:
        fits &= count <= high
    return fits


class FrameReceiver(wiring.Component):
    """Request bytes on ``rx`` -> decoded frames on ``frame``, payloads in the buffer.

    The state machine of :class:`delrec.firmware.protocol.FrameDecoder`: it
    skips bytes until ``0xA5``, then takes the command, the length,
    ``length`` payload bytes (written to the buffer from address 0 through
    ``payload``) and the CRC, a byte per cycle. It then puts the frame on
    ``frame`` for one cycle: status ``TRUNCATED`` if the frame stayed idle
    for ``byte_timeout`` consecutive cycles between two of its bytes (at the
    last of them), ``BAD_CRC`` if its CRC does not match (on the edge that
    takes the CRC's low byte), else on the next cycle ``BAD_COMMAND`` for an
    unknown command, ``BAD_LENGTH`` for a length that breaks
    :data:`~delrec.wire.REQUEST_RULES`, ``STEP_OPEN`` for one of
    :data:`STEP_CLOSED_COMMANDS` while ``step_open``, else ``OK``.

    After a frame the receiver stops listening (``rx.ready`` low) until
    ``listen`` is asserted: then it listens for the next ``0xA5`` from the
    next cycle on. It starts that way after reset.

    Parameters
    ----------
    byte_timeout : int
        Consecutive idle cycles inside a frame that drop it as ``TRUNCATED``.

    Attributes
    ----------
    rx : In(stream.Signature(8))
        Request bytes.
    payload : Out(BUFFER_WRITE)
        The frame's payload bytes, to the link's buffer.
    frame : Out(stream.Signature(DECODED_FRAME, always_ready=True))
        The decoded frame, valid for one cycle.
    step_open : In(1)
        A step is open: the requests of :data:`STEP_CLOSED_COMMANDS` are refused.
    listen : In(1)
        The previous frame is done with: listen for the next one.
    """

    def __init__(self, *, byte_timeout: int):
        if isinstance(byte_timeout, bool) or not isinstance(byte_timeout, int) or byte_timeout < 1:
            raise TypeError(f"Byte timeout must be a positive integer, not {byte_timeout!r}")
        self.byte_timeout = byte_timeout
        super().__init__({
            "rx": In(stream.Signature(8)),
            "payload": Out(BUFFER_WRITE),
            "frame": Out(stream.Signature(DECODED_FRAME, always_ready=True)),
            "step_open": In(1),
            "listen": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        command = Signal(8)
        length = Signal(8)
        received = Signal(8)                # payload bytes received so far
        frame_crc = Signal(16)
        crc_high = Signal(8)
        idle = Signal(range(self.byte_timeout))
        rx_fire = Signal()
        rx_byte = self.rx.payload
        rx_crc_next = Signal(16)
        m.d.comb += [rx_fire.eq(self.rx.valid & self.rx.ready),
                     rx_crc_next.eq(crc16_next(frame_crc, rx_byte)),
                     self.frame.payload.command.eq(command), self.frame.payload.length.eq(length)]

        def decided(status):
            """The frame is decoded: put it out, stop listening."""
            m.d.comb += [self.frame.valid.eq(1), self.frame.payload.status.eq(status)]
            m.next = "WAIT"

        def frame_byte(on_byte):
            """One byte of a frame after its sync byte, or the byte timeout."""
            m.d.comb += self.rx.ready.eq(1)
            with m.If(rx_fire):
                m.d.sync += idle.eq(0)
                on_byte()
            with m.Elif(idle == self.byte_timeout - 1):
                decided(Status.TRUNCATED)
            with m.Else():
                m.d.sync += idle.eq(idle + 1)

        with m.FSM(name="receiver", init="WAIT"):
            with m.State("WAIT"):
                with m.If(self.listen):
                    m.next = "SYNC"

            with m.State("SYNC"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_fire & (rx_byte == SYNC)):
                    m.d.sync += [idle.eq(0), frame_crc.eq(CRC16_INIT)]
                    m.next = "COMMAND"

            with m.State("COMMAND"):
                def on_command():
                    m.d.sync += [command.eq(rx_byte), frame_crc.eq(rx_crc_next)]
                    m.next = "LENGTH"
                frame_byte(on_command)

            with m.State("LENGTH"):
                def on_length():
                    m.d.sync += [length.eq(rx_byte), received.eq(0), frame_crc.eq(rx_crc_next)]
                    m.next = "CRC_HIGH"
                    with m.If(rx_byte != 0):
                        m.next = "PAYLOAD"
                frame_byte(on_length)

            with m.State("PAYLOAD"):
                def on_payload():
                    m.d.comb += [self.payload.en.eq(1), self.payload.addr.eq(received),
                                 self.payload.data.eq(rx_byte)]
                    m.d.sync += [received.eq(received + 1), frame_crc.eq(rx_crc_next)]
                    with m.If(received == length - 1):
                        m.next = "CRC_HIGH"
                frame_byte(on_payload)

            with m.State("CRC_HIGH"):
                def on_crc_high():
                    m.d.sync += crc_high.eq(rx_byte)
                    m.next = "CRC_LOW"
                frame_byte(on_crc_high)

            with m.State("CRC_LOW"):
                def on_crc_low():
                    with m.If(Cat(rx_byte, crc_high) == frame_crc):
                        m.next = "CHECK"
                    with m.Else():
                        decided(Status.BAD_CRC)
                frame_byte(on_crc_low)

            with m.State("CHECK"):
                with m.If(command >= COMMAND_COUNT):
                    decided(Status.BAD_COMMAND)
                with m.Else():
                    with m.Switch(command):
                        for code in Command:
                            with m.Case(code):
                                with m.If(~_length_fits(code, length)):
                                    decided(Status.BAD_LENGTH)
                                if code in STEP_CLOSED_COMMANDS:
                                    with m.Elif(self.step_open):
                                        decided(Status.STEP_OPEN)
                                with m.Else():
                                    decided(Status.OK)
        return m
