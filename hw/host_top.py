"""The FPGA top: a serial line in, a serial line out, the inference core between them."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from delrec.build import CoreBuild

from .core import InferenceCore
from .host_link import HostLink
from .uart import UARTReceiver, UARTTransmitter, check_clocks_per_bit

__all__ = ["HostTop"]

#: Bits of one 8N1 character on the line.
CHARACTER_BITS = 10


class HostTop(wiring.Component):
    """UART receiver -> :class:`~delrec.hw.host_link.HostLink` -> UART transmitter, core inside.

    The host speaks the host protocol (:mod:`delrec.wire`) over an 8N1 serial line
    at ``clock / clocks_per_bit`` baud; :class:`~delrec.firmware.driver.CoreDriver`
    is the other end. This is the top the FPGA builds and the end-to-end
    co-simulation (:mod:`delrec.sim.host_cosim`) instantiate; it uses the
    ``sync`` clock domain (clock and reset come from the platform or the
    simulator).

    Parameters
    ----------
    build : CoreBuild
        The core build (of :class:`~delrec.hw.core.InferenceCore` and
        :class:`~delrec.hw.host_link.HostLink`).
    clocks_per_bit : int
        UART divisor: clock cycles per bit (at least 4).
    byte_timeout : int
        Clock cycles a frame may stay idle between two bytes before the link
        drops it; longer than one character (``10 * clocks_per_bit``), as
        the gap between two received bytes is at least that.
    weight_bank_bits : int, optional
        The core's weight memory banks (see :class:`~delrec.hw.core.InferenceCore`).

    Attributes
    ----------
    rx : In(1)
        Serial input from the host (idle high; synchronised inside).
    tx : Out(1)
        Serial output to the host (idle high).
    """

    def __init__(self, build: CoreBuild, *, clocks_per_bit: int, byte_timeout: int,
                 weight_bank_bits: int | None = None):
        check_clocks_per_bit(clocks_per_bit)
        if isinstance(byte_timeout, bool) or not isinstance(byte_timeout, int):
            raise TypeError(f"Byte timeout must be an integer number of cycles, not {byte_timeout!r}")
        character = CHARACTER_BITS * clocks_per_bit
        if byte_timeout <= character:
            raise ValueError(f"Byte timeout must be longer than one character ({CHARACTER_BITS} bits of "
                             f"{clocks_per_bit} cycles = {character} cycles), not {byte_timeout}")
        self.build = build
        self.clocks_per_bit = clocks_per_bit
        self.byte_timeout = byte_timeout
        # built here so that a build the link cannot carry fails at construction, not at elaboration
        self.core = InferenceCore(build, weight_bank_bits=weight_bank_bits)
        self.link = HostLink(build, byte_timeout=byte_timeout)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = UARTReceiver(self.clocks_per_bit)
        m.submodules.transmitter = transmitter = UARTTransmitter(self.clocks_per_bit)
        m.submodules.link = link = self.link
        m.submodules.core = core = self.core
        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx)]
        wiring.connect(m, receiver.data, link.rx)
        wiring.connect(m, link.tx, transmitter.data)
        for name in ("inputs", "spikes", "write", "read", "read_data"):
            wiring.connect(m, getattr(link, name), getattr(core, name))
        return m
