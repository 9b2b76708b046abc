"""The host protocol: framed commands with a CRC between a host and the core's host link.

Byte frames, in both directions::

    0xA5 | command | length | payload (length bytes, 0..255) | crc16 (2 bytes, big endian)

The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no
reflection, no final XOR) over ``command``, ``length`` and ``payload``. A reply
carries ``command | 0x80`` and starts with a status byte (:class:`Status`).
The receiver (the RTL frame decoder and :class:`FrameDecoder` here, which
implement the same state machine) waits for ``0xA5``, drops any frame whose
CRC does not match, whose length breaks the command's rules, or which stops
for longer than its byte timeout, answers those with a ``NAK`` frame naming
the reason, counts them, and resynchronises on the next ``0xA5``.

Commands (host -> device) and their payloads, all integers little endian:

==========  ====  =================================================  ==============================
command     code  payload                                            reply payload (after status)
==========  ====  =================================================  ==============================
PING        0x00  (none)                                             geometry: C, N, K (u16 each),
                                                                     P, delay_bits, queue,
                                                                     delay_kind, version (u8 each)
WRITE       0x01  1..31 x (target u8, addr u24, data u32)            (none)
CLEAR       0x02  (none)                                             (none)
EVENTS      0x03  0..127 x channel u16: input events, step stays open (none)
STEP        0x04  0..127 x channel u16: last events, then run a step spike bitmap, ceil(N/8) bytes,
                                                                     neuron i in bit i % 8 of
                                                                     byte i // 8
READ        0x05  1..63 x (target u8, addr u16)                      one u32 per read
STATS       0x06  (none)                                             frames_ok, frames_bad,
                                                                     bad_crc, truncated,
                                                                     bad_command, bad_length (u32)
==========  ====  =================================================  ==============================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["SYNC", "MAX_PAYLOAD", "Command", "Status", "crc16", "encode_frame", "Frame", "FrameDecoder",
           "ProtocolError", "check_request", "REPLY_FLAG", "NAK", "PROTOCOL_VERSION", "STATS_COUNTERS", "pack_writes",
           "pack_channels", "pack_reads", "unpack_bitmap"]

SYNC = 0xA5
MAX_PAYLOAD = 255
REPLY_FLAG = 0x80
NAK = 0xFF
PROTOCOL_VERSION = 1


#: the frame counters STATS returns, in order (u32 little endian each)
STATS_COUNTERS = ("frames_ok", "frames_bad", "bad_crc", "truncated", "bad_command", "bad_length")


class Command(enum.IntEnum):
    PING = 0x00
    WRITE = 0x01
    CLEAR = 0x02
    EVENTS = 0x03
    STEP = 0x04
    READ = 0x05
    STATS = 0x06


class Status(enum.IntEnum):
    OK = 0
    BAD_CRC = 1
    TRUNCATED = 2
    BAD_COMMAND = 3
    BAD_LENGTH = 4
    #: WRITE, CLEAR or READ while a step is open (after EVENTS, before STEP):
    #: refused, counted among the bad commands
    STEP_OPEN = 5


class ProtocolError(Exception):
    """A reply that is missing, corrupt, a NAK or not the one expected."""


#: element sizes and element-count limits of the requests
REQUEST_RULES = {
    Command.PING: (0, 0, 0),
    Command.CLEAR: (0, 0, 0),
    Command.STATS: (0, 0, 0),
    Command.WRITE: (8, 1, 31),
    Command.EVENTS: (2, 0, 127),
    Command.STEP: (2, 0, 127),
    Command.READ: (3, 1, 63),
}


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``crc16(b"123456789") == 0x29B1``)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def encode_frame(command: int, payload: bytes = b"") -> bytes:
    """One frame; raises ``ValueError`` for a payload longer than 255 bytes."""
    if not 0 <= command <= 0xFF:
        raise ValueError(f"Command must be a byte, not {command!r}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"Frame payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD}")
    body = bytes([command, len(payload)]) + bytes(payload)
    return bytes([SYNC]) + body + crc16(body).to_bytes(2, "big")


def check_request(command: int, length: int) -> Status:
    """Whether a request of ``length`` payload bytes is well formed (``OK``) or why not."""
    try:
        size, lo, hi = REQUEST_RULES[Command(command)]
    except ValueError:
        return Status.BAD_COMMAND
    if size == 0:
        return Status.OK if length == 0 else Status.BAD_LENGTH
    if length % size or not lo <= length // size <= hi:
        return Status.BAD_LENGTH
    return Status.OK


@dataclass(frozen=True)
class Frame:
    command: int
    payload: bytes

    @property
    def is_reply(self) -> bool:
        return bool(self.command & REPLY_FLAG)


class FrameDecoder:
    """Incremental frame parser: the receiver's state machine, byte by byte.

    ``feed(byte)`` returns a :class:`Frame` when one completes with a good
    CRC, else None. Bad CRCs are counted in ``errors[Status.BAD_CRC]``;
    :meth:`timeout` (called by the owner when the line has been idle too
    long) drops a partial frame and counts it as ``TRUNCATED``. Bytes
    before a ``0xA5`` are skipped.
    """

    def __init__(self):
        self.errors = {Status.BAD_CRC: 0, Status.TRUNCATED: 0}
        self.frames = 0
        self._reset()

    def _reset(self):
        self._state = "sync"
        self._command = 0
        self._length = 0
        self._payload = bytearray()
        self._crc = bytearray()

    @property
    def in_frame(self) -> bool:
        return self._state != "sync"

    def timeout(self) -> bool:
        """Drop a partial frame; True if there was one."""
        if self.in_frame:
            self.errors[Status.TRUNCATED] += 1
            self._reset()
            return True
        return False

    def feed(self, byte: int) -> Frame | None:
        state = self._state
        if state == "sync":
            if byte == SYNC:
                self._state = "command"
        elif state == "command":
            self._command, self._state = byte, "length"
        elif state == "length":
            self._length = byte
            self._state = "payload" if byte else "crc"
        elif state == "payload":
            self._payload.append(byte)
            if len(self._payload) == self._length:
                self._state = "crc"
        else:
            self._crc.append(byte)
            if len(self._crc) == 2:
                body = bytes([self._command, self._length]) + bytes(self._payload)
                good = crc16(body) == int.from_bytes(self._crc, "big")
                frame = Frame(self._command, bytes(self._payload))
                self._reset()
                if good:
                    self.frames += 1
                    return frame
                self.errors[Status.BAD_CRC] += 1
        return None

    def feed_all(self, data: bytes) -> list[Frame]:
        return [f for f in (self.feed(b) for b in data) if f is not None]


# -- payload helpers (shared by the driver and the testbenches) ---------------

def pack_writes(writes) -> bytes:
    """``[(target, addr, data), ...]`` -> WRITE payload (addr < 2^24, data < 2^32)."""
    out = bytearray()
    for target, addr, data in writes:
        if not 0 <= addr < 1 << 24:
            raise ValueError(f"Write address {addr} does not fit the protocol's 24 bits")
        if not 0 <= data < 1 << 32:
            raise ValueError(f"Write data {data} does not fit the protocol's 32 bits")
        if not 0 <= target <= 0xFF:
            raise ValueError(f"Write target {target} is not a byte")
        out.append(target)
        out += addr.to_bytes(3, "little") + data.to_bytes(4, "little")
    return bytes(out)


def pack_channels(channels) -> bytes:
    return b"".join(int(c).to_bytes(2, "little") for c in channels)


def pack_reads(reads) -> bytes:
    return b"".join(bytes([t]) + int(a).to_bytes(2, "little") for t, a in reads)


def unpack_bitmap(data: bytes, count: int) -> list[int]:
    """Indices of the set bits of a spike bitmap (``count`` neurons)."""
    return [i for i in range(count) if data[i // 8] >> (i % 8) & 1]
