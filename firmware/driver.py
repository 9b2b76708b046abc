"""The host driver of the core: one class for the simulated FPGA and a real board.

:class:`CoreDriver` speaks :mod:`delrec.firmware.protocol` over any
:class:`Transport` (``write(bytes)``, ``read(size, timeout) -> bytes``): a
serial port (:class:`SerialTransport`, pyserial) on a board, or the cocotb
transport of :mod:`delrec.sim` in simulation, which runs this same code in a
thread bridged to the simulator. Every request waits for its reply; a NAK or
a reply lost to noise is retried ``retries`` times, then raised as
:class:`~delrec.firmware.protocol.ProtocolError` with what was expected.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from delrec.hw.ports import Counter, ReadTarget
from delrec.wire import NAK, REPLY_FLAG, REQUEST_RULES, STATS_COUNTERS, Command, Status, decode_ping

from .protocol import (FrameDecoder, ProtocolError, encode_frame, pack_channels, pack_reads, pack_writes,
                       unpack_bitmap)

__all__ = ["Transport", "SerialTransport", "CoreDriver", "DeviceInfo"]


def _most(command: Command) -> int:
    """The most elements one request carries (:data:`delrec.wire.REQUEST_RULES`)."""
    return REQUEST_RULES[command][2]


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def read(self, size: int, timeout: float) -> bytes: ...


class SerialTransport:
    """A serial port through pyserial (``pip install pyserial``)."""

    def __init__(self, port: str, baudrate: int = 115200):
        try:
            import serial
        except ImportError as err:
            raise RuntimeError("A board link needs pyserial: pip install pyserial") from err
        self.port = serial.Serial(port, baudrate=baudrate, timeout=0)

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def read(self, size: int, timeout: float) -> bytes:
        self.port.timeout = timeout
        return self.port.read(size)


@dataclass(frozen=True)
class DeviceInfo:
    """What PING reports: the core build on the other end."""

    inputs: int
    neurons: int
    classes: int
    lanes: int
    delay_bits: int
    queue: str
    delay_kind: str
    version: int


class CoreDriver:
    """Load networks, run steps and read state over the host protocol.

    Parameters
    ----------
    transport : Transport
    timeout : float
        Seconds to wait for a reply (the transport's unit; simulation
        transports may interpret it in their own time base).
    retries : int
        Resends after a NAK or a missing/corrupt reply. Only idempotent
        requests are resent (everything but EVENTS and STEP, which would
        inject events twice: those raise at once).
    """

    def __init__(self, transport: Transport, timeout: float = 1.0, retries: int = 2):
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.decoder = FrameDecoder()
        self.info: DeviceInfo | None = None

    # -- framing ---------------------------------------------------------
    def _receive(self):
        deadline = time.monotonic() + self.timeout if self.timeout else None
        while True:
            chunk = self.transport.read(1, self.timeout)
            if not chunk:
                self.decoder.timeout()
                return None
            frame = self.decoder.feed(chunk[0])
            if frame is not None:
                return frame
            if deadline is not None and time.monotonic() > deadline + 10 * self.timeout:
                return None

    def request(self, command: Command, payload: bytes = b"") -> bytes:
        """Send one request; return its reply payload after the status byte."""
        idempotent = command not in (Command.EVENTS, Command.STEP)
        problem = "no reply"
        for _ in range(1 + (self.retries if idempotent else 0)):
            self.transport.write(encode_frame(command, payload))
            reply = self._receive()
            if reply is None:
                problem = "no reply (timeout)"
                continue
            if reply.command == NAK:
                reason = Status(reply.payload[0]).name if reply.payload else "?"
                problem = f"NAK {reason}"
                continue
            if reply.command != (command | REPLY_FLAG) or not reply.payload:
                problem = f"unexpected reply 0x{reply.command:02x}"
                continue
            if reply.payload[0] != Status.OK:
                problem = f"status {Status(reply.payload[0]).name}"
                continue
            return reply.payload[1:]
        raise ProtocolError(f"{command.name}: {problem}")

    # -- commands --------------------------------------------------------
    def ping(self) -> DeviceInfo:
        data = self.request(Command.PING)
        try:
            self.info = DeviceInfo(**decode_ping(data))
        except ValueError as exc:
            raise ProtocolError(f"PING: {exc}") from None
        return self.info

    def write(self, writes) -> None:
        """Element writes ``[(target, addr, data), ...]`` (31 per frame)."""
        writes = [tuple(int(v) for v in w) for w in writes]
        most = _most(Command.WRITE)
        for start in range(0, len(writes), most):
            self.request(Command.WRITE, pack_writes(writes[start:start + most]))

    def load(self, image) -> None:
        """Clear the core and write a compiled network (:class:`~delrec.firmware.compiler.CoreImage`)."""
        self.clear()
        self.write(image.writes.tolist())

    def clear(self) -> None:
        self.request(Command.CLEAR)

    def step(self, channels) -> list[int]:
        """Send one step's input events (channel indices, repeats allowed); return its spikes."""
        channels = [int(c) for c in channels]
        info = self.info or self.ping()
        most = _most(Command.EVENTS)
        while len(channels) > most:
            self.request(Command.EVENTS, pack_channels(channels[:most]))
            channels = channels[most:]
        bitmap = self.request(Command.STEP, pack_channels(channels))
        return unpack_bitmap(bitmap, info.neurons)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Input event counts ``[T, C]`` -> spikes ``[T, N]`` (0/1)."""
        info = self.info or self.ping()
        x = np.asarray(x, dtype=np.int64)
        spikes = np.zeros((x.shape[0], info.neurons), np.int64)
        for t in range(x.shape[0]):
            channels = np.repeat(np.arange(x.shape[1]), x[t])
            spikes[t, self.step(channels)] = 1
        return spikes

    def read(self, reads) -> list[int]:
        """Raw values of ``[(target, addr), ...]`` (63 per frame)."""
        reads = [(int(t), int(a)) for t, a in reads]
        values = []
        most = _most(Command.READ)
        for start in range(0, len(reads), most):
            data = self.request(Command.READ, pack_reads(reads[start:start + most]))
            values += [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
        return values

    def scores(self, bits: int = 32) -> list[int]:
        """Signed readout scores of every class."""
        info = self.info or self.ping()
        raw = self.read([(ReadTarget.SCORE.value, k) for k in range(info.classes)])
        return [v - (1 << bits) if v >> (bits - 1) & 1 else v for v in raw]

    def counters(self) -> dict:
        """``{"CYCLES": ..., "SYNAPTIC_EVENTS": ..., "STEPS": ...}`` (:class:`delrec.hw.ports.Counter`)."""
        values = self.read([(ReadTarget.COUNTER.value, int(c)) for c in Counter])
        return {c.name: v for c, v in zip(Counter, values)}

    def stats(self) -> dict:
        data = self.request(Command.STATS)
        return {n: int.from_bytes(data[4 * i:4 * i + 4], "little") for i, n in enumerate(STATS_COUNTERS)}

