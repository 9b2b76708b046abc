"""The host protocol's frames: encoder, decoder and payload helpers of :mod:`delrec.wire`.

The wire format (frame layout, CRC, commands, statuses, the payloads of every
request and reply) is defined once in :mod:`delrec.wire`, which the gateware's
host link is written from too. This module is the host's end of it:
:func:`encode_frame` builds a frame, :class:`FrameDecoder` is the receiver's
state machine byte by byte (the RTL frame decoder implements the same one),
:func:`check_request` the length rules a receiver applies, and the ``pack_*``
and :func:`unpack_bitmap` helpers build and read payloads.
"""

from __future__ import annotations

from dataclasses import dataclass

from delrec.wire import (CHANNEL_BITS, MAX_PAYLOAD, READ_ADDR_BITS, REPLY_FLAG, REQUEST_RULES, SYNC,
                         WRITE_ADDR_BITS, WRITE_DATA_BITS, Command, Status, crc16)

__all__ = ["encode_frame", "Frame", "FrameDecoder", "ProtocolError", "check_request", "pack_writes",
           "pack_channels", "pack_reads", "unpack_bitmap"]


class ProtocolError(Exception):
    """A reply that is missing, corrupt, a NAK or not the one expected."""


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
        if not 0 <= addr < 1 << WRITE_ADDR_BITS:
            raise ValueError(f"Write address {addr} does not fit the protocol's {WRITE_ADDR_BITS} bits")
        if not 0 <= data < 1 << WRITE_DATA_BITS:
            raise ValueError(f"Write data {data} does not fit the protocol's {WRITE_DATA_BITS} bits")
        if not 0 <= target <= 0xFF:
            raise ValueError(f"Write target {target} is not a byte")
        out.append(target)
        out += addr.to_bytes(WRITE_ADDR_BITS // 8, "little") + data.to_bytes(WRITE_DATA_BITS // 8, "little")
    return bytes(out)


def pack_channels(channels) -> bytes:
    return b"".join(int(c).to_bytes(CHANNEL_BITS // 8, "little") for c in channels)


def pack_reads(reads) -> bytes:
    return b"".join(bytes([t]) + int(a).to_bytes(READ_ADDR_BITS // 8, "little") for t, a in reads)


def unpack_bitmap(data: bytes, count: int) -> list[int]:
    """Indices of the set bits of a spike bitmap (``count`` neurons)."""
    return [i for i in range(count) if data[i // 8] >> (i % 8) & 1]
