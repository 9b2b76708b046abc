"""The host protocol (framing, CRC, the reference receiver) and the driver's retry logic."""

import random

import pytest

from delrec.firmware.driver import CoreDriver
from delrec.firmware.protocol import (NAK, REPLY_FLAG, Command, FrameDecoder, ProtocolError, Status,
                                      check_request, crc16, encode_frame, pack_channels, pack_reads,
                                      pack_writes, unpack_bitmap)


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_frames_round_trip_and_resynchronise_after_garbage():
    rng = random.Random(0)
    frames = [(rng.randrange(7), bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
              for _ in range(50)]
    stream = bytearray()
    for command, payload in frames:
        stream += bytes(rng.randrange(256) for _ in range(rng.randrange(3))).replace(b"\xa5", b"\x00")
        stream += encode_frame(command, payload)
    got = FrameDecoder().feed_all(bytes(stream))
    assert [(f.command, f.payload) for f in got] == frames


def test_corrupt_and_truncated_frames_are_counted_and_dropped():
    good = encode_frame(Command.PING)
    flipped = bytearray(encode_frame(Command.WRITE, pack_writes([(1, 2, 3)])))
    flipped[5] ^= 0x10
    decoder = FrameDecoder()
    assert decoder.feed_all(bytes(flipped)) == []
    assert decoder.errors[Status.BAD_CRC] == 1
    assert decoder.feed_all(good[:3]) == [] and decoder.in_frame
    assert decoder.timeout() and decoder.errors[Status.TRUNCATED] == 1
    assert [f.command for f in decoder.feed_all(good)] == [Command.PING]
    assert decoder.frames == 1


def test_request_rules():
    assert check_request(Command.PING, 0) is Status.OK
    assert check_request(Command.PING, 1) is Status.BAD_LENGTH
    assert check_request(Command.WRITE, 8 * 31) is Status.OK
    assert check_request(Command.WRITE, 0) is Status.BAD_LENGTH
    assert check_request(Command.WRITE, 12) is Status.BAD_LENGTH
    assert check_request(Command.STEP, 0) is Status.OK
    assert check_request(Command.READ, 3 * 64) is Status.BAD_LENGTH
    assert check_request(0x42, 0) is Status.BAD_COMMAND


def test_payload_packing_limits():
    assert pack_writes([(2, 0x123456, 0xDEADBEEF)]) == bytes([2, 0x56, 0x34, 0x12, 0xEF, 0xBE, 0xAD, 0xDE])
    with pytest.raises(ValueError, match="address 16777216 does not fit the protocol's 24 bits"):
        pack_writes([(0, 1 << 24, 0)])
    with pytest.raises(ValueError, match="payload is 256 bytes; the limit is 255"):
        encode_frame(Command.STEP, bytes(256))
    assert pack_channels([1, 258]) == bytes([1, 0, 2, 1])
    assert pack_reads([(3, 2)]) == bytes([3, 2, 0])
    assert unpack_bitmap(bytes([0b101, 0x80]), 16) == [0, 2, 15]


class ScriptedTransport:
    """Answers each request with the next scripted reply (bytes), or nothing."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.sent = []
        self.pending = b""

    def write(self, data):
        self.sent.append(data)
        self.pending += self.replies.pop(0) if self.replies else b""

    def read(self, size, timeout):
        out, self.pending = self.pending[:size], self.pending[size:]
        return out


def test_driver_retries_a_nak_and_gives_up_with_the_reason():
    ok = encode_frame(Command.CLEAR | REPLY_FLAG, bytes([Status.OK]))
    nak = encode_frame(NAK, bytes([Status.BAD_CRC]))
    transport = ScriptedTransport([nak, ok])
    CoreDriver(transport, retries=2).clear()
    assert len(transport.sent) == 2
    transport = ScriptedTransport([nak, nak, nak])
    with pytest.raises(ProtocolError, match="CLEAR: NAK BAD_CRC"):
        CoreDriver(transport, retries=2).clear()
    # a STEP is never resent: it would inject its events twice
    transport = ScriptedTransport([b"", ok])
    driver = CoreDriver(transport, retries=2)
    driver.info = type("Info", (), {"neurons": 8})()
    with pytest.raises(ProtocolError, match="STEP: no reply"):
        driver.step([1, 2])
    assert len(transport.sent) == 1
