"""The parts of the host link, each on its own in amaranth.sim.

:mod:`tests.test_host_link` checks the assembled
:class:`~delrec.hw.host_link.HostLink` byte for byte and cycle for cycle;
these tests pin each part's own contract (what its docstring promises about
its streams and its timing), so that a part can be changed or reused
without the whole link around it: the length rules of the receiver against
:func:`delrec.firmware.protocol.check_request`, the framer against
:func:`delrec.firmware.protocol.encode_frame`, the payload reader, the
counters, the reply bodies and the spike collector on a
:class:`~delrec.hw.link_buffer.LinkBuffer`, and the parts' argument checks.
"""

from __future__ import annotations

import gc
import re

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from delrec.arith import CoreSpec
from delrec.build import CoreBuild
from delrec.firmware.protocol import check_request, encode_frame
from delrec.hw.frame_counters import COUNTED, FrameCounters
from delrec.hw.frame_receiver import FrameReceiver, element_count
from delrec.hw.link_buffer import COUNTER_BYTES, STATS_BASE, LinkBuffer
from delrec.hw.payload_reader import PayloadReader
from delrec.hw.reply_body import ReplyBody
from delrec.hw.reply_framer import ReplyFramer
from delrec.hw.spike_collector import SpikeCollector
from delrec.wire import STATS_COUNTERS, Command, Status

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def run(module, bench, clock=True):
    sim = Simulator(module)
    if clock:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def on_buffer(part, writers=(), readers=()):
    """A module with ``part`` and a LinkBuffer whose first ports are the bench's, then ``part``'s."""
    m = Module()
    m.submodules.part = part
    m.submodules.buffer = buffer = LinkBuffer(writers=1 + len(writers), readers=1 + len(readers))
    for port, user in zip(buffer.write[1:], writers):
        wiring.connect(m, user, port)
    for port, user in zip(buffer.read[1:], readers):
        wiring.connect(m, user, port)
    return m, buffer.write[0], buffer.read[0]


async def poke(ctx, port, address: int, data: bytes):
    """Write ``data`` into the buffer from ``address`` (a cycle per byte)."""
    for offset, byte in enumerate(data):
        ctx.set(port.en, 1)
        ctx.set(port.addr, address + offset)
        ctx.set(port.data, byte)
        await ctx.tick()
    for member in (port.en, port.addr, port.data):      # idle ports are all 0 (they are ORed)
        ctx.set(member, 0)


async def peek(ctx, port, address: int, count: int) -> bytes:
    values = []
    for offset in range(count):
        ctx.set(port.en, 1)
        ctx.set(port.addr, address + offset)
        await ctx.tick()
        values.append(ctx.get(port.data))
    ctx.set(port.en, 0)
    ctx.set(port.addr, 0)
    return bytes(values)


def test_element_count_divides():
    length = Signal(8)
    counts = {size: element_count(length, size) for size in (1, 2, 3, 8)}

    async def bench(ctx):
        for value in range(256):
            ctx.set(length, value)
            assert [ctx.get(count) for count in counts.values()] == [value // size for size in counts]

    run(Module(), bench, clock=False)
    with pytest.raises(ValueError, match="Element size must be a power of two or 3, not 5"):
        element_count(length, 5)


def test_receiver_decodes_like_the_protocol():
    """Every command byte and length: the status the receiver decodes is :func:`check_request`'s
    (or ``STEP_OPEN``), one cycle after the CRC; the payload lands in the buffer."""
    receiver = FrameReceiver(byte_timeout=4)
    m, _, read = on_buffer(receiver, writers=[receiver.payload])
    cases = [(command, length) for command in (*Command, 7, 0xFF) for length in (0, 1, 2, 3, 8, 9, 189, 192)]

    async def bench(ctx):
        ctx.set(receiver.listen, 1)
        for number, (command, length) in enumerate(cases):
            step_open = number % 3 == 0
            ctx.set(receiver.step_open, step_open)
            payload = bytes((number + i) % 256 for i in range(length))
            for byte in encode_frame(command, payload):
                ctx.set(receiver.rx.valid, 1)
                ctx.set(receiver.rx.payload, byte)
                while not ctx.get(receiver.rx.ready):
                    await ctx.tick()
                assert not ctx.get(receiver.frame.valid)   # a good CRC: decided in the next cycle
                await ctx.tick()
            ctx.set(receiver.rx.valid, 0)
            expected = check_request(command, length)
            if expected == Status.OK and step_open and command in (Command.WRITE, Command.CLEAR, Command.READ):
                expected = Status.STEP_OPEN
            assert ctx.get(receiver.frame.valid) == 1
            assert (ctx.get(receiver.frame.payload.command), ctx.get(receiver.frame.payload.length),
                    ctx.get(receiver.frame.payload.status)) == (command, length, expected), (command, length)
            if length and number % 8 == 0:
                assert await peek(ctx, read, 0, length) == payload
        # a frame that stops: TRUNCATED after byte_timeout idle cycles
        for byte in encode_frame(Command.PING)[:2]:
            ctx.set(receiver.rx.valid, 1)
            ctx.set(receiver.rx.payload, byte)
            while not ctx.get(receiver.rx.ready):
                await ctx.tick()
            await ctx.tick()
        ctx.set(receiver.rx.valid, 0)
        for _ in range(3):
            assert not ctx.get(receiver.frame.valid)
            await ctx.tick()
        assert ctx.get(receiver.frame.valid) and ctx.get(receiver.frame.payload.status) == Status.TRUNCATED

    run(m, bench)


def test_framer_sends_encoded_frames():
    """Header and body in, the bytes of :func:`encode_frame` out (status first in the payload)."""
    framer = ReplyFramer()
    replies = [(Command.PING | 0x80, Status.OK, bytes(range(11))), (0xFF, Status.BAD_CRC, b""),
               (Command.READ | 0x80, Status.OK, b"\x01\x02\x03\x04")]
    sent = []

    async def bench(ctx):
        ctx.set(framer.tx.ready, 1)
        for command, status, body in replies:
            assert ctx.get(framer.header.ready)
            ctx.set(framer.header.valid, 1)
            ctx.set(framer.header.payload, {"command": command, "length": 1 + len(body), "status": status})
            await ctx.tick()
            ctx.set(framer.header.valid, 0)
            frame, rest = [], list(body)
            while not ctx.get(framer.header.ready):
                ctx.set(framer.body.valid, bool(rest))
                ctx.set(framer.body.payload, rest[0] if rest else 0)
                if ctx.get(framer.body.ready) and rest:
                    rest.pop(0)
                if ctx.get(framer.tx.valid):
                    frame.append(ctx.get(framer.tx.payload))
                await ctx.tick()
            sent.append(bytes(frame))

    run(framer, bench)
    assert sent == [encode_frame(command, bytes([status]) + body) for command, status, body in replies]


def test_payload_reader_elements_and_timing():
    reader = PayloadReader()
    m, write, _ = on_buffer(reader, readers=[reader.buffer])
    payload = bytes(range(10, 19))

    async def bench(ctx):
        await poke(ctx, write, 0, payload)
        ctx.set(reader.start.valid, 1)
        ctx.set(reader.start.payload, {"size": 3, "length": len(payload)})
        await ctx.tick()
        ctx.set(reader.start.valid, 0)
        for index in range(3):
            for _ in range(3 + 1):                  # size + 1 cycles to fetch
                assert not ctx.get(reader.element.valid)
                await ctx.tick()
            assert ctx.get(reader.element.valid)
            data = ctx.get(reader.element.payload.data)
            assert (data >> 40).to_bytes(3, "little") == payload[3 * index:3 * index + 3]
            assert ctx.get(reader.element.payload.last) == (index == 2)
            await ctx.tick()                        # held until taken
            assert ctx.get(reader.element.valid)
            ctx.set(reader.element.ready, 1)
            await ctx.tick()
            ctx.set(reader.element.ready, 0)
        await ctx.tick().repeat(5)
        assert not ctx.get(reader.element.valid)

    run(m, bench)


def test_counters_zero_then_count():
    counters = FrameCounters()
    m, _, read = on_buffer(counters, writers=[counters.buffer_write], readers=[counters.buffer_read])
    frames = [Status.OK] * 3 + [Status.BAD_CRC, Status.STEP_OPEN, Status.BAD_LENGTH, Status.TRUNCATED]
    size = len(STATS_COUNTERS) * COUNTER_BYTES

    async def bench(ctx):
        ctx.set(counters.enable, 1)
        for cycle in range(size):                   # zeroing from reset
            assert ctx.get(counters.idle) == (cycle >= size - 1)
            await ctx.tick()
        for status in frames:
            ctx.set(counters.frame.valid, 1)
            ctx.set(counters.frame.payload, status)
            await ctx.tick()
            ctx.set(counters.frame.valid, 0)
            cycles = 0
            while not ctx.get(counters.idle):
                await ctx.tick()
                cycles += 1
            assert cycles == len(COUNTED[status]) * (COUNTER_BYTES + 1)
        ctx.set(counters.enable, 0)
        data = await peek(ctx, read, STATS_BASE, size)
        values = {name: int.from_bytes(data[4 * i:4 * i + 4], "little") for i, name in enumerate(STATS_COUNTERS)}
        assert values == dict(frames_ok=3, frames_bad=4, bad_crc=1, truncated=1, bad_command=1, bad_length=1)

    run(m, bench)


def test_reply_body_sources():
    body = ReplyBody(b"\x0a\x0b\x0c")
    m, write, _ = on_buffer(body, readers=[body.buffer])

    async def collect(ctx, start, payload=None):
        ctx.set(start.valid, 1)
        if payload is not None:
            ctx.set(start.payload, payload)
        await ctx.tick()
        ctx.set(start.valid, 0)
        got, cycles = [], 0
        while True:
            cycles += 1
            done = ctx.get(body.done)
            if ctx.get(body.body.valid):
                got.append(ctx.get(body.body.payload))
            await ctx.tick()
            if done:
                return bytes(got), cycles

    async def bench(ctx):
        ctx.set(body.body.ready, 1)
        await poke(ctx, write, 300, b"\x55\x66\x77")
        assert await collect(ctx, body.send_ping) == (b"\x0a\x0b\x0c", 3)
        assert await collect(ctx, body.send_value, 0x12345678) == (b"\x78\x56\x34\x12", 4)
        assert await collect(ctx, body.send_buffer, {"first": 300, "last": 302}) == (b"\x55\x66\x77", 6)

    run(m, bench)


def test_spike_collector_bitmap():
    build = CoreBuild(inputs=2, neurons=20, classes=1, spec=CoreSpec())
    collector = SpikeCollector(build)
    m, write, read = on_buffer(collector, writers=[collector.buffer])
    spikes = [0, 3, 9, 15, 19]

    async def bench(ctx):
        await poke(ctx, write, 0, b"\xff\xff\xff")
        ctx.set(collector.start.valid, 1)
        await ctx.tick()
        ctx.set(collector.start.valid, 0)
        await ctx.tick().repeat(3)                  # zeroing ceil(20 / 8) bytes
        assert ctx.get(collector.close.valid) and not ctx.get(collector.spikes.ready)
        ctx.set(collector.close.ready, 1)
        await ctx.tick()
        ctx.set(collector.close.ready, 0)
        for neuron in spikes + [None]:
            assert ctx.get(collector.spikes.ready)
            ctx.set(collector.spikes.valid, 1)
            ctx.set(collector.spikes.payload, {"neuron": neuron or 0, "last": neuron is None})
            assert ctx.get(collector.done) == (neuron is None)
            await ctx.tick()
        ctx.set(collector.spikes.valid, 0)
        bitmap = await peek(ctx, read, 0, 3)
        assert bitmap == bytes([0b00001001, 0b10000010, 0b00001000])

    run(m, bench)


@pytest.mark.parametrize("make, error, message", [
    (lambda: LinkBuffer(writers=0, readers=1), TypeError, "Writer count must be a positive integer, not 0"),
    (lambda: LinkBuffer(writers=1, readers=True), TypeError, "Reader count must be a positive integer, not True"),
    (lambda: FrameReceiver(byte_timeout=-1), TypeError, "Byte timeout must be a positive integer, not -1"),
    (lambda: ReplyBody(""), TypeError, "PING's reply must be non-empty bytes, not ''"),
    (lambda: SpikeCollector(None), TypeError, "Build must be a delrec.build.CoreBuild, not None"),
])
def test_part_validation(make, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make()
    gc.collect()        # the half-built part warns now, where the warning is ignored
