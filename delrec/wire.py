"""The wire format of the host protocol: what the host link and the host driver agree on.

Both ends of the serial line are written from this module: the gateware
(:class:`delrec.hw.host_link.HostLink`, :mod:`delrec.hw.crc`) and the host
(:mod:`delrec.firmware.protocol`'s encoder and decoder,
:class:`delrec.firmware.driver.CoreDriver`). It is plain Python (no torch, no
Amaranth), so that neither side imports the other.

Byte frames, in both directions::

    0xA5 | command | length | payload (length bytes, 0..255) | crc16 (2 bytes, big endian)

The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no
reflection, no final XOR) over ``command``, ``length`` and ``payload``. A reply
carries ``command | 0x80`` and starts with a status byte (:class:`Status`).
The receiver (the RTL frame decoder and
:class:`~delrec.firmware.protocol.FrameDecoder`, which implement the same
state machine) waits for ``0xA5``, drops any frame whose CRC does not match,
whose length breaks the command's rules (:data:`REQUEST_RULES`), or which
stops for longer than its byte timeout, answers those with a ``NAK`` frame
naming the reason, counts them, and resynchronises on the next ``0xA5``.

Commands (host -> device) and their payloads, all integers little endian:

==========  ====  =================================================  ==============================
command     code  payload                                            reply payload (after status)
==========  ====  =================================================  ==============================
PING        0x00  (none)                                             geometry: C, N, K (u16 each),
                                                                     P, delay_bits, queue,
                                                                     delay_kind, version (u8 each)
                                                                     (:func:`encode_ping`)
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

from .arith import DELAY_KINDS
from .build import QUEUE_KINDS, CoreBuild

__all__ = ["SYNC", "MAX_PAYLOAD", "REPLY_FLAG", "NAK", "PROTOCOL_VERSION", "STATS_COUNTERS",
           "Command", "Status", "REQUEST_RULES",
           "WRITE_ADDR_BITS", "WRITE_DATA_BITS", "READ_ADDR_BITS", "READ_DATA_BITS", "CHANNEL_BITS",
           "PING_COUNT_BITS", "PING_BYTE_MAX", "PING_BYTES", "encode_ping", "decode_ping",
           "CRC16_POLY", "CRC16_INIT", "crc16_step", "crc16"]

#: The first byte of every frame.
SYNC = 0xA5
#: The most payload bytes a frame carries (its length is one byte).
MAX_PAYLOAD = 255
#: Set in the command byte of a reply.
REPLY_FLAG = 0x80
#: The command byte of a reply that refuses a frame (payload: the :class:`Status`).
NAK = 0xFF
#: What PING reports as the protocol's version.
PROTOCOL_VERSION = 1

#: The frame counters STATS returns, in order (u32 little endian each).
STATS_COUNTERS = ("frames_ok", "frames_bad", "bad_crc", "truncated", "bad_command", "bad_length")


class Command(enum.IntEnum):
    """The request codes (host -> device)."""

    PING = 0x00
    WRITE = 0x01
    CLEAR = 0x02
    EVENTS = 0x03
    STEP = 0x04
    READ = 0x05
    STATS = 0x06


class Status(enum.IntEnum):
    """The first payload byte of every reply (and the payload of a ``NAK``)."""

    OK = 0
    BAD_CRC = 1
    TRUNCATED = 2
    BAD_COMMAND = 3
    BAD_LENGTH = 4
    #: WRITE, CLEAR or READ while a step is open (after EVENTS, before STEP):
    #: refused, counted among the bad commands
    STEP_OPEN = 5


#: Field widths of the requests' elements: a WRITE's address and data, a
#: READ's address and its u32 reply, an EVENTS or STEP channel.
WRITE_ADDR_BITS = 24
WRITE_DATA_BITS = 32
READ_ADDR_BITS = 16
READ_DATA_BITS = 32
CHANNEL_BITS = 16

#: Element size in bytes, fewest and most elements of each request's payload.
REQUEST_RULES = {
    Command.PING: (0, 0, 0),
    Command.CLEAR: (0, 0, 0),
    Command.STATS: (0, 0, 0),
    Command.WRITE: (8, 1, 31),      # target u8, addr u24, data u32
    Command.EVENTS: (2, 0, 127),    # channel u16
    Command.STEP: (2, 0, 127),      # channel u16
    Command.READ: (3, 1, 63),       # target u8, addr u16
}

#: PING's counts (``C``, ``N``, ``K``) are u16, its other fields u8.
PING_COUNT_BITS = 16
PING_BYTE_MAX = 0xFF
#: Bytes of PING's reply after the status byte.
PING_BYTES = 3 * PING_COUNT_BITS // 8 + 5


def encode_ping(build: CoreBuild) -> bytes:
    """What ``PING`` replies after its status byte for a core ``build``.

    ``C, N, K`` (u16), ``P, delay_bits`` (u8), the queue's index in
    :data:`~delrec.build.QUEUE_KINDS` and the delay kind's in
    :data:`~delrec.arith.DELAY_KINDS` (u8), :data:`PROTOCOL_VERSION` (u8).
    """
    count = PING_COUNT_BITS // 8
    counts = (build.inputs, build.neurons, build.classes)
    return (b"".join(value.to_bytes(count, "little") for value in counts)
            + bytes([build.lanes, build.spec.delay_bits, QUEUE_KINDS.index(build.queue),
                     DELAY_KINDS.index(build.delay_kind), PROTOCOL_VERSION]))


def decode_ping(payload: bytes) -> dict:
    """The fields of a ``PING`` reply (after its status byte), the inverse of :func:`encode_ping`.

    Returns
    -------
    dict
        ``inputs``, ``neurons``, ``classes``, ``lanes``, ``delay_bits``,
        ``queue`` and ``delay_kind`` (names) and ``version``.

    Raises
    ------
    ValueError
        For a payload of another length, or an unknown queue or delay kind.
    """
    if len(payload) != PING_BYTES:
        raise ValueError(f"A PING reply has {PING_BYTES} bytes, not {len(payload)}")
    count = PING_COUNT_BITS // 8
    inputs, neurons, classes = (int.from_bytes(payload[i:i + count], "little")
                                for i in range(0, 3 * count, count))
    lanes, delay_bits, queue, kind, version = payload[3 * count:]
    if queue >= len(QUEUE_KINDS) or kind >= len(DELAY_KINDS):
        raise ValueError(f"A PING reply names queue {queue} and delay kind {kind}; the queues are "
                         f"{QUEUE_KINDS}, the delay kinds {DELAY_KINDS}")
    return dict(inputs=inputs, neurons=neurons, classes=classes, lanes=lanes, delay_bits=delay_bits,
                queue=QUEUE_KINDS[queue], delay_kind=DELAY_KINDS[kind], version=version)


#: CRC-16/CCITT-FALSE: polynomial and initial value (no reflection, no final XOR).
CRC16_POLY = 0x1021
CRC16_INIT = 0xFFFF


def crc16_step(crc: int, byte: int) -> int:
    """The CRC after one more ``byte`` (bit-serial, most significant bit first)."""
    crc ^= byte << 8
    for _ in range(8):
        crc = ((crc << 1) ^ CRC16_POLY) if crc & 0x8000 else (crc << 1)
        crc &= 0xFFFF
    return crc


def crc16(data: bytes, crc: int = CRC16_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``crc16(b"123456789") == 0x29B1``)."""
    for byte in data:
        crc = crc16_step(crc, byte)
    return crc
