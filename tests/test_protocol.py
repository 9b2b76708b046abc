"""The host protocol (wire format, framing, CRC, the reference receiver) and the driver."""

import random

import pytest

from delrec.arith import CoreSpec
from delrec.build import CoreBuild
from delrec.firmware.driver import CoreDriver, DeviceInfo
from delrec.firmware.protocol import (FrameDecoder, ProtocolError, check_request, encode_frame, pack_channels,
                                      pack_reads, pack_writes, unpack_bitmap)
from delrec.wire import (MAX_PAYLOAD, NAK, REPLY_FLAG, REQUEST_RULES, Command, Status, crc16, decode_ping,
                         encode_ping)


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


def test_every_request_and_reply_fits_a_frame():
    for command, (size, _, most) in REQUEST_RULES.items():
        assert size * most <= MAX_PAYLOAD, command.name
    assert 1 + 4 * REQUEST_RULES[Command.READ][2] <= MAX_PAYLOAD     # status and one u32 per read


def test_ping_payload_is_pinned_and_round_trips():
    build = CoreBuild(inputs=300, neurons=12, classes=3, spec=CoreSpec(delay_bits=5), lanes=4,
                      delay_kind="synaptic", queue="ring")
    # C, N, K (u16 little endian), P, delay_bits, queue (0 ring, 1 history), delay kind
    # (0 axonal, 1 synaptic), version 1: the bytes the host link sends
    payload = bytes([0x2C, 0x01, 12, 0, 3, 0, 4, 5, 0, 1, 1])
    assert encode_ping(build) == payload
    assert encode_ping(CoreBuild(inputs=2, neurons=5, classes=1, queue="history"))[8:10] == bytes([1, 0])
    assert decode_ping(payload) == dict(inputs=300, neurons=12, classes=3, lanes=4, delay_bits=5,
                                        queue="ring", delay_kind="synaptic", version=1)
    with pytest.raises(ValueError, match="A PING reply has 11 bytes, not 10"):
        decode_ping(payload[:10])
    with pytest.raises(ValueError, match="names queue 2"):
        decode_ping(payload[:8] + bytes([2]) + payload[9:])


def test_driver_ping():
    payload = bytes([Status.OK]) + bytes([3, 0, 8, 0, 2, 0, 2, 3, 1, 0, 1])
    driver = CoreDriver(ScriptedTransport([encode_frame(Command.PING | REPLY_FLAG, payload)]))
    assert driver.ping() == DeviceInfo(inputs=3, neurons=8, classes=2, lanes=2, delay_bits=3, queue="history",
                                       delay_kind="axonal", version=1)
    short = encode_frame(Command.PING | REPLY_FLAG, payload[:-1])
    with pytest.raises(ProtocolError, match="PING: A PING reply has 11 bytes, not 10"):
        CoreDriver(ScriptedTransport([short])).ping()


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
