"""8N1 UART receiver and transmitter with byte streams.

Both ends run at ``clocks_per_bit`` clock cycles per bit (the divisor: the
clock frequency over the baud rate, rounded; at least 4 so that the receiver
can sample each bit near its middle). A character is a start bit (0), eight
data bits, least significant first, and one stop bit (1); the idle line is 1.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTReceiver", "UARTTransmitter", "MIN_CLOCKS_PER_BIT", "check_clocks_per_bit"]

#: Smallest divisor: the receiver samples each bit ``clocks_per_bit // 2``
#: cycles after its start edge and needs a cycle on either side of that.
MIN_CLOCKS_PER_BIT = 4


def check_clocks_per_bit(clocks_per_bit) -> int:
    """``clocks_per_bit`` if it is a usable divisor, else a ``ValueError`` saying why."""
    if isinstance(clocks_per_bit, bool) or not isinstance(clocks_per_bit, int):
        raise TypeError(f"Clocks per bit must be an integer, not {clocks_per_bit!r}")
    if clocks_per_bit < MIN_CLOCKS_PER_BIT:
        raise ValueError(f"Clocks per bit must be at least {MIN_CLOCKS_PER_BIT} (mid-bit sampling), "
                         f"not {clocks_per_bit}")
    return clocks_per_bit


class UARTReceiver(wiring.Component):
    """Serial line -> byte stream (8N1).

    The line passes a two-flip-flop synchroniser (it may come straight from
    a pin). A falling edge on the idle line starts a character; the start bit
    is checked again half a bit later (a shorter low pulse is a glitch and is
    ignored), then every bit is sampled one bit time after the previous one,
    near its middle. A character whose stop bit reads 0 is dropped and
    pulses ``framing_error``; the receiver then waits for the line to return
    to 1 (so a held-low line, a break, gives one error, not a stream of
    garbage). The received byte waits in an output register until the stream
    takes it; a byte completed while the previous one still waits is
    dropped and pulses ``overrun``.

    Latency: ``data.valid`` rises ``3 + clocks_per_bit // 2 + 9 *
    clocks_per_bit`` clock edges after the start bit's falling edge appears
    on ``rx`` (two synchroniser stages, one to see the edge, half a bit, eight
    data bits and the stop bit), i.e. mid-way through the stop bit.

    Parameters
    ----------
    clocks_per_bit : int
        Clock cycles per bit, at least :data:`MIN_CLOCKS_PER_BIT`.

    Attributes
    ----------
    rx : In(1)
        The serial line (asynchronous; idle high).
    data : Out(stream.Signature(8))
        Received bytes.
    framing_error : Out(1)
        One-cycle pulse: a character ended with a 0 stop bit (the byte is dropped).
    overrun : Out(1)
        One-cycle pulse: a byte was dropped because ``data`` had not taken the previous one.
    """

    def __init__(self, clocks_per_bit: int):
        self.clocks_per_bit = check_clocks_per_bit(clocks_per_bit)
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self.clocks_per_bit
        line = Signal(init=1)
        m.submodules.synchroniser = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(cpb))          # cycles left until the next sample
        bits_left = Signal(range(9))        # data bits still to sample
        shift = Signal(8)                   # data bits so far, the latest at the top
        held = Signal(8)
        held_valid = Signal()
        m.d.comb += [self.data.valid.eq(held_valid), self.data.payload.eq(held)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += held_valid.eq(0)

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        sample_now = Signal()
        m.d.comb += sample_now.eq(timer == 0)

        with m.FSM(name="receiver"):
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(cpb // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(sample_now):
                    with m.If(line):           # too short for a start bit: a glitch
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(cpb - 1), bits_left.eq(8)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(sample_now):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), bits_left.eq(bits_left - 1),
                                 timer.eq(cpb - 1)]
                    with m.If(bits_left == 1):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(sample_now):
                    with m.If(line):
                        with m.If(held_valid & ~self.data.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [held.eq(shift), held_valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):             # wait for the line to return to idle
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """Byte stream -> serial line (8N1).

    Takes a byte whenever the line is free (``data.ready`` is high from the
    last cycle of a stop bit on, so back-to-back bytes leave with no idle
    time between characters: ``10 * clocks_per_bit`` cycles per byte).

    Parameters
    ----------
    clocks_per_bit : int
        Clock cycles per bit, at least :data:`MIN_CLOCKS_PER_BIT`.

    Attributes
    ----------
    data : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1)
        The serial line (registered; idle high).
    """

    def __init__(self, clocks_per_bit: int):
        self.clocks_per_bit = check_clocks_per_bit(clocks_per_bit)
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self.clocks_per_bit
        timer = Signal(range(cpb))                  # cycles left of the current bit
        bits_left = Signal(range(11))               # bits of the character not yet finished
        frame = Signal(10, init=(1 << 10) - 1)      # start, data LSB first, stop; bit 0 on the line
        line = Signal(init=1)
        m.d.comb += self.tx.eq(line)

        bit_done = Signal()
        m.d.comb += [
            bit_done.eq(timer == 0),
            self.data.ready.eq((bits_left == 0) | ((bits_left == 1) & bit_done)),
        ]
        with m.If(bits_left != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(bit_done):
                m.d.sync += [timer.eq(cpb - 1), bits_left.eq(bits_left - 1),
                             frame.eq(Cat(frame[1:], Const(1, 1))), line.eq(frame[1])]
        with m.If(self.data.valid & self.data.ready):
            character = Cat(Const(0, 1), self.data.payload, Const(1, 1))
            m.d.sync += [frame.eq(character), line.eq(0), bits_left.eq(10), timer.eq(cpb - 1)]
        return m
