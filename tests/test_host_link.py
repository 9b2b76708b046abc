"""The host link, the UART and the FPGA top in amaranth.sim.

The :class:`~delrec.hw.host_link.HostLink` tests drive its byte streams
directly (one byte per cycle, no UART) with frames (:mod:`delrec.wire`) from
:func:`delrec.firmware.protocol.encode_frame` and decode its replies with
:class:`~delrec.firmware.protocol.FrameDecoder`, with a real
:class:`~delrec.hw.core.InferenceCore` behind it: geometry, parameter
round trips, steps against :func:`delrec.golden.fixed.run_fixed`, a fuzz of
good and bad frames, the byte timeout and the cycle cost of every command.
The UART tests run bytes through the transmitter and receiver at a few
clocks per bit, and one PING through :class:`~delrec.hw.host_top.HostTop` at
the pins.
"""

from __future__ import annotations

import os
import re
from collections import deque

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from delrec.arith import CoreSpec
from delrec.firmware import protocol
from delrec.build import CoreBuild
from delrec.firmware.compiler import compile_network
from delrec.firmware.protocol import (FrameDecoder, check_request, encode_frame, pack_channels, pack_reads,
                                      pack_writes, unpack_bitmap)
from delrec.golden.fixed import run_fixed
from delrec.hw import host_link
from delrec.hw.core import InferenceCore
from delrec.hw.crc import crc16_next
from delrec.hw.host_link import HostLink
from delrec.hw.host_top import HostTop
from delrec.hw.ports import ConfigRegister, Counter, ReadTarget, WriteTarget
from delrec.hw.uart import UARTReceiver, UARTTransmitter
from delrec.image import FixedNetwork
from delrec.wire import (NAK, REPLY_FLAG, REQUEST_RULES, STATS_COUNTERS, SYNC, Command, Status, crc16,
                         crc16_step)

# validation tests build components that are never elaborated
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

SPEC = CoreSpec(weight_bits=8, v_bits=16, acc_bits=16, delay_bits=3, decay_bits=8, readout_bits=20,
                score_bits=24)
TIMEOUT = 24          # byte timeout of the link under test, cycles
READ_TARGETS = {"membrane": ReadTarget.MEMBRANE.value, "readout": ReadTarget.READOUT.value,
                "score": ReadTarget.SCORE.value, "counter": ReadTarget.COUNTER.value}


def to_signed(raw: int, bits: int) -> int:
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


# ---------------------------------------------------------------------------
# the host end of a HostLink's byte streams
# ---------------------------------------------------------------------------

class LinkBench:
    """Sends request bytes on ``link.rx`` and decodes replies from ``link.tx`` (amaranth.sim).

    Replies are taken and decoded on every cycle, also while request bytes
    are being offered, and queue up in ``replies`` as ``(frame, cycle)``.
    ``cycle`` counts the clock edges this bench has waited for (it is the
    only process that advances time). ``tx_stall`` is the probability of
    ``tx.ready`` low on a cycle, ``gap`` the probability of an idle cycle
    before each request byte (runs of them stay below the byte timeout).
    """

    def __init__(self, link: HostLink, rng: np.random.Generator, tx_stall: float = 0.0, gap: float = 0.0):
        self.link = link
        self.rng = rng
        self.tx_stall = tx_stall
        self.gap = gap
        self.cycle = 0
        self.decoder = FrameDecoder()
        self.replies: deque[tuple[protocol.Frame, int]] = deque()

    async def tick(self, ctx) -> bool:
        """One clock edge; take a reply byte if one is offered (and not stalled). Returns ``rx.ready``."""
        tx = self.link.tx
        take = self.tx_stall == 0 or self.rng.random() >= self.tx_stall
        ctx.set(tx.ready, take)
        _, _, rx_ready, valid, byte = await ctx.tick().sample(self.link.rx.ready, tx.valid, tx.payload)
        self.cycle += 1
        if valid and take:
            frame = self.decoder.feed(byte)
            assert self.decoder.errors[Status.BAD_CRC] == 0, "a reply with a bad CRC"
            if frame is not None:
                self.replies.append((frame, self.cycle))
        return rx_ready

    async def idle(self, ctx, cycles: int):
        """``cycles`` cycles with no request byte offered."""
        for _ in range(cycles):
            await self.tick(ctx)

    async def send(self, ctx, data: bytes, limit: int = 20_000) -> int:
        """Offer ``data`` byte by byte; return the cycle of the edge that took the last one.

        Fails if the link takes no byte for ``limit`` cycles.
        """
        rx = self.link.rx
        for byte in data:
            if self.gap:
                pause = 0
                while pause < TIMEOUT - 2 and self.rng.random() < self.gap:
                    pause += 1
                await self.idle(ctx, pause)
            ctx.set(rx.payload, byte)
            ctx.set(rx.valid, 1)
            offered = self.cycle
            while not await self.tick(ctx):
                if self.cycle - offered > limit:
                    raise AssertionError(f"the link took no byte for {limit} cycles (at cycle {self.cycle})")
            ctx.set(rx.valid, 0)
        return self.cycle

    async def receive(self, ctx, limit: int) -> tuple[protocol.Frame, int]:
        """The next reply frame and the cycle of the edge that took its last byte.

        Fails if none has arrived within ``limit`` cycles from now.
        """
        start = self.cycle
        while not self.replies:
            if self.cycle - start >= limit:
                raise AssertionError(f"no reply within {limit} cycles (at cycle {self.cycle})")
            await self.tick(ctx)
        return self.replies.popleft()

    async def exchange(self, ctx, frame: bytes, limit: int) -> tuple[protocol.Frame, int]:
        """Send a frame, return its reply and the cycles from its last byte to the reply's last."""
        sent = await self.send(ctx, frame)
        reply, done = await self.receive(ctx, limit)
        return reply, done - sent

    async def request(self, ctx, command: Command, payload: bytes = b"", limit: int = 20_000) -> bytes:
        """A request that must succeed: the reply payload after its OK status."""
        reply, _ = await self.exchange(ctx, encode_frame(command, payload), limit)
        assert reply.command == command | REPLY_FLAG, f"{command.name}: reply 0x{reply.command:02x} {reply}"
        assert reply.payload[:1] == bytes([Status.OK]), f"{command.name}: status {reply.payload[:1]!r}"
        return reply.payload[1:]

    async def expect_nak(self, ctx, frame: bytes, status: Status, limit: int = 1_000):
        reply, _ = await self.exchange(ctx, frame, limit)
        assert (reply.command, reply.payload) == (NAK, bytes([status])), \
            f"expected NAK {status.name}, got {reply}"

    # -- commands ------------------------------------------------------------------------------
    async def write(self, ctx, writes):
        writes = [tuple(int(v) for v in w) for w in writes]
        for start in range(0, len(writes), 31):
            assert await self.request(ctx, Command.WRITE, pack_writes(writes[start:start + 31])) == b""

    async def read(self, ctx, reads) -> list[int]:
        values = []
        for start in range(0, len(reads), 63):
            data = await self.request(ctx, Command.READ, pack_reads(reads[start:start + 63]))
            values += [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
        assert len(values) == len(reads)
        return values

    async def step(self, ctx, channels, split: int | None = None) -> list[int]:
        """One step; the first ``split`` events go in an EVENTS frame, the rest with STEP."""
        channels = list(channels)
        if split is not None:
            assert await self.request(ctx, Command.EVENTS, pack_channels(channels[:split])) == b""
            channels = channels[split:]
        bitmap = await self.request(ctx, Command.STEP, pack_channels(channels))
        assert len(bitmap) == -(-self.link.geometry.neurons // 8)
        return unpack_bitmap(bitmap, self.link.geometry.neurons)

    async def stats(self, ctx) -> dict:
        data = await self.request(ctx, Command.STATS)
        names = ("frames_ok", "frames_bad", "bad_crc", "truncated", "bad_command", "bad_length")
        assert len(data) == 4 * len(names)
        return {n: int.from_bytes(data[4 * i:4 * i + 4], "little") for i, n in enumerate(names)}


def simulate(build: CoreBuild, testbench, byte_timeout: int = TIMEOUT):
    """Run ``testbench(ctx, link)`` on a HostLink wired to an InferenceCore of ``build``.

    With ``$DELREC_HOST_LINK_VCD`` set, the run is dumped there as a waveform.
    """
    link = HostLink(build, byte_timeout=byte_timeout)
    core = InferenceCore(build)
    m = Module()
    m.submodules.link = link
    m.submodules.core = core
    for name in ("inputs", "spikes", "write", "read", "read_data"):
        wiring.connect(m, getattr(link, name), getattr(core, name))
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def run(ctx):
        await testbench(ctx, link)

    sim.add_testbench(run)
    if os.environ.get("DELREC_HOST_LINK_VCD"):
        with sim.write_vcd(os.environ["DELREC_HOST_LINK_VCD"]):
            sim.run()
    else:
        sim.run()


def make_network(build: CoreBuild, seed: int, steps: int, rate: float = 0.4):
    """A random network that fits ``build``, its writes, inputs ``[T, C]`` and golden trace."""
    rng = np.random.default_rng(seed)
    net = FixedNetwork.random(build.spec, build.inputs, build.neurons, build.classes, rng,
                              delay_kind=build.delay_kind, reset="soft", max_input=2)
    net.theta = max(1, net.theta // 2)      # livelier
    image = compile_network(net, build, max_input=2)
    x = rng.integers(1, 3, size=(steps, build.inputs)) * (rng.random((steps, build.inputs)) < rate)
    trace = run_fixed(image.network, x[:, None, :])
    return image, x, trace


def channels_of(x_t: np.ndarray, rng: np.random.Generator) -> list[int]:
    channels = np.repeat(np.arange(len(x_t)), x_t)
    rng.shuffle(channels)
    return [int(c) for c in channels]


def spikes_of(trace, t: int) -> list[int]:
    return [int(i) for i in np.nonzero(trace.spikes[t, 0])[0]]


# ---------------------------------------------------------------------------
# protocol constants and construction
# ---------------------------------------------------------------------------

def test_gateware_constants_match_the_protocol():
    # the link reuses the protocol's constants; what it derives must agree with them
    assert host_link.COMMAND_COUNT == max(Command) + 1
    assert len(STATS_COUNTERS) * host_link.COUNTER_BYTES + host_link.STATS_BASE <= host_link.BUFFER_BYTES
    assert host_link.ELEMENT_BYTES == {code: REQUEST_RULES[Command(code)][0]
                                       for code in host_link.ELEMENT_BYTES}
    rng = np.random.default_rng(0)
    data = bytes(rng.integers(0, 256, 64).tolist())
    crc = 0xFFFF
    for byte in data:
        crc = crc16_step(crc, byte)
    assert crc == crc16(data) and crc16_step(0xFFFF, 0x31) == crc16(b"1")


def test_crc_gateware_matches_the_protocol():
    from amaranth.hdl import Signal
    crc, byte, out = Signal(16), Signal(8), Signal(16)
    m = Module()
    m.d.comb += out.eq(crc16_next(crc, byte))
    sim = Simulator(m)
    rng = np.random.default_rng(1)

    async def bench(ctx):
        for _ in range(200):
            c, b = int(rng.integers(0, 1 << 16)), int(rng.integers(0, 256))
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == crc16_step(c, b)

    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("build, byte_timeout, error, message", [
    (dict(), 0, TypeError, "Byte timeout must be a positive integer, not 0"),
    (dict(), 2.5, TypeError, "Byte timeout must be a positive integer, not 2.5"),
    (dict(neurons=2040), 100, ValueError, "at most 2032 neurons, not 2040"),
    (dict(inputs=1 << 16), 100, ValueError, "Input count 65536 does not fit PING's u16"),
    (dict(neurons=256, lanes=256), 100, ValueError, "Lane count must fit PING's u8, not 256"),
    (dict(spec=CoreSpec(readout_bits=40, score_bits=48)), 100, ValueError,
     "The core's write data is 40 bits; the protocol carries 32"),
    (None, 100, TypeError, "Build must be a delrec.build.CoreBuild, not None"),
])
def test_link_validation(build, byte_timeout, error, message):
    """The link checks what the protocol can carry; the rest is :class:`CoreBuild`'s to check."""
    if build is not None:
        build = CoreBuild(**dict(dict(inputs=3, neurons=8, classes=2, spec=SPEC), **build))
    with pytest.raises(error, match=re.escape(message)):
        HostLink(build, byte_timeout=byte_timeout)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(clocks_per_bit=3), ValueError, "Clocks per bit must be at least 4 (mid-bit sampling), not 3"),
    (dict(clocks_per_bit=4.0), TypeError, "Clocks per bit must be an integer, not 4.0"),
    (dict(byte_timeout=40), ValueError, "Byte timeout must be longer than one character (10 bits of 4 "
                                        "cycles = 40 cycles), not 40"),
    (dict(byte_timeout="1ms"), TypeError, "Byte timeout must be an integer number of cycles"),
    (dict(build=CoreBuild(inputs=3, neurons=2040, classes=2, spec=SPEC)), ValueError,
     "at most 2032 neurons, not 2040"),
    (dict(build=dict(inputs=3, neurons=8, classes=2)), TypeError, "Build must be a delrec.build.CoreBuild"),
])
def test_top_validation(kwargs, error, message):
    args = dict(build=CoreBuild(inputs=3, neurons=8, classes=2, spec=SPEC), clocks_per_bit=4,
                byte_timeout=100)
    args.update(kwargs)
    with pytest.raises(error, match=re.escape(message)):
        HostTop(args.pop("build"), **args)
    with pytest.raises(ValueError, match=re.escape("Clocks per bit must be at least 4")):
        UARTReceiver(2)
    with pytest.raises(ValueError, match=re.escape("Clocks per bit must be at least 4")):
        UARTTransmitter(1)


# ---------------------------------------------------------------------------
# the link with a core behind it
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("build", [
    CoreBuild(inputs=300, neurons=12, classes=3, spec=SPEC, lanes=4, delay_kind="synaptic", queue="ring"),
    CoreBuild(inputs=2, neurons=5, classes=1, spec=CoreSpec(delay_bits=5), lanes=1, queue="history"),
], ids=["ring-synaptic", "history-axonal"])
def test_ping_reports_the_geometry(build):
    async def bench(ctx, link):
        host = LinkBench(link, np.random.default_rng(0))
        info = await host.request(ctx, Command.PING)
        assert len(info) == 11
        c, n, k = (int.from_bytes(info[i:i + 2], "little") for i in (0, 2, 4))
        assert (c, n, k) == (build.inputs, build.neurons, build.classes)
        # the wire format, pinned here rather than derived: queue 0 ring, 1 history; delay kind 0 axonal,
        # 1 synaptic; protocol version 1
        queue = {"ring": 0, "history": 1}[build.queue]
        delay_kind = {"axonal": 0, "synaptic": 1}[build.delay_kind]
        assert list(info[6:]) == [build.lanes, build.spec.delay_bits, queue, delay_kind, 1]
        assert info == link.ping_payload()

    simulate(build, bench)


def test_write_read_round_trip_and_golden_steps():
    """Load through WRITE, run STEPs (events split across frames) and read back every state.

    Every step's spike bitmap, membrane, readout value, score and counter
    equals the golden model's; writes and reads whose fields do not fit are
    dropped (and read as 0); while a step is open, WRITE, CLEAR and READ are
    refused and the step still completes; CLEAR zeroes the state.
    """
    build = CoreBuild(inputs=4, neurons=10, classes=3, spec=SPEC, lanes=2, queue="ring")
    image, x, trace = make_network(build, seed=3, steps=6)
    N, K = build.neurons, build.classes
    assert trace.spikes[:, 0, 8:].any(), "no spike lands in the bitmap's second byte"
    spec = build.spec

    async def bench(ctx, link):
        rng = np.random.default_rng(3)
        host = LinkBench(link, rng, tx_stall=0.3, gap=0.2)
        # out-of-field elements first: a target past the last one, an address past the core's field
        await host.write(ctx, [(9, 0, 1), (WriteTarget.BIAS.value, 1 << 20, 5)])
        assert await host.read(ctx, [(7, 0), (ReadTarget.MEMBRANE.value, 1 << 15)]) == [0, 0]
        await host.write(ctx, image.writes.tolist())
        for t in range(x.shape[0]):
            channels = channels_of(x[t], rng)
            split = int(rng.integers(0, len(channels) + 1)) if t % 2 else None
            if t == 3:      # a step left open refuses what the core cannot take, then completes
                assert await host.request(ctx, Command.EVENTS, pack_channels(channels[:1])) == b""
                for refused in (encode_frame(Command.WRITE, pack_writes([(WriteTarget.BIAS.value, 0, 99)])),
                                encode_frame(Command.CLEAR),
                                encode_frame(Command.READ, pack_reads([(ReadTarget.MEMBRANE.value, 0)]))):
                    await host.expect_nak(ctx, refused, Status.STEP_OPEN)
                await host.request(ctx, Command.PING)
                channels, split = channels[1:], None
            spikes = await host.step(ctx, channels, split)
            assert spikes == spikes_of(trace, t), f"step {t}: {spikes}, golden {spikes_of(trace, t)}"
            reads = ([(READ_TARGETS["membrane"], i) for i in range(N)]
                     + [(READ_TARGETS["readout"], k) for k in range(K)]
                     + [(READ_TARGETS["score"], k) for k in range(K)]
                     + [(READ_TARGETS["counter"], int(c)) for c in Counter])
            values = await host.read(ctx, reads)
            v = [to_signed(r, spec.v_bits) for r in values[:N]]
            readout = [to_signed(r, spec.readout_bits) for r in values[N:N + K]]
            scores = [to_signed(r, spec.score_bits) for r in values[N + K:N + 2 * K]]
            assert v == trace.v[t, 0].tolist(), f"membranes at step {t}"
            assert readout == trace.readout[t, 0].tolist(), f"readout at step {t}"
            assert scores == trace.scores[t, 0].tolist(), f"scores at step {t}"
            assert values[N + 2 * K + Counter.STEPS] == t + 1
        stats = await host.stats(ctx)
        assert stats["bad_command"] == stats["frames_bad"] == 3
        # CLEAR zeroes the state, keeps the parameters; THETA rewritten huge: nothing fires any more
        assert await host.request(ctx, Command.CLEAR) == b""
        cleared = await host.read(ctx, [(READ_TARGETS["counter"], Counter.STEPS), (READ_TARGETS["score"], 0)])
        assert cleared == [0, 0]
        highest_theta = (1 << (spec.v_bits - 1)) - 1
        await host.write(ctx, [(WriteTarget.CONFIG.value, ConfigRegister.THETA, highest_theta)])
        assert await host.step(ctx, [0, 1, 2, 3] * 2) == []

    simulate(build, bench)


# ---------------------------------------------------------------------------
# fuzz: good frames among garbage, corrupt, truncated, unknown and mis-sized frames
# ---------------------------------------------------------------------------

BAD_LENGTHS = [(Command.PING, 1), (Command.CLEAR, 2), (Command.STATS, 4), (Command.WRITE, 0),
               (Command.WRITE, 7), (Command.WRITE, 12), (Command.EVENTS, 3), (Command.STEP, 5),
               (Command.READ, 0), (Command.READ, 4), (Command.READ, 192), (Command.STEP, 255)]


def reply_bound(build: CoreBuild, command: Command, elements: int) -> int:
    """Generous cycles from a request's last byte to its reply's last (tx ready 70% of cycles)."""
    B, K, N = build.neurons // build.lanes, build.classes, build.neurons
    reply_bytes = 6 + {Command.PING: 11, Command.STATS: 24, Command.READ: 4 * elements,
                       Command.STEP: -(-N // 8)}.get(command, 0)
    work = 12 * elements
    if command == Command.STEP:
        work += elements * (B + 2) + 3 * B + K + 10 + N * (B + K + 4)
    return 50 + 3 * reply_bytes + work


FUZZ_BUILDS = [
    (CoreBuild(inputs=3, neurons=6, classes=2, spec=SPEC, lanes=2, queue="history"), 5),
    (CoreBuild(inputs=4, neurons=10, classes=2, spec=SPEC, lanes=2, delay_kind="synaptic"), 6),
]


@pytest.mark.parametrize("build, seed", FUZZ_BUILDS, ids=["history-axonal", "ring-synaptic"])
def test_fuzz_frames_garbage_and_errors(build, seed):
    """Random good requests interleaved with garbage and every kind of bad frame.

    Every good request gets its reply within :func:`reply_bound`; every bad
    frame its NAK; nothing bad reaches the core (the corrupt frames carry
    WRITEs and EVENTS that would change the golden steps); STATS counts each
    kind exactly as injected; the steps after all that still match golden.
    """
    image, x, trace = make_network(build, seed=seed, steps=10, rate=0.5)
    rng = np.random.default_rng(seed)
    injected = {"bad_crc": 0, "truncated": 0, "bad_command": 0, "bad_length": 0}

    def harmful_frame() -> bytes:
        """A well-formed frame that would change the outcome if it reached the core."""
        if rng.random() < 0.5:
            writes = [(WriteTarget.W_REC.value, int(rng.integers(0, build.neurons ** 2)),
                       int(rng.integers(0, 256)))
                      for _ in range(int(rng.integers(1, 5)))]
            return encode_frame(Command.WRITE, pack_writes(writes))
        command = Command.EVENTS if rng.random() < 0.5 else Command.STEP
        return encode_frame(command, pack_channels(rng.integers(0, build.inputs, int(rng.integers(1, 6)))))

    async def bad_segment(ctx, host, kind=None):
        if kind is None:
            kind = rng.choice(["garbage", "bad_crc", "truncated", "bad_command", "bad_length"])
        if kind == "garbage":       # no sync byte: skipped without a reply
            junk = [b for b in rng.integers(0, 256, int(rng.integers(1, 12))).tolist() if b != SYNC]
            await host.send(ctx, bytes(junk))
            return
        injected[kind] += 1
        if kind == "bad_crc":       # one flipped bit anywhere but the sync and length bytes
            frame = bytearray(harmful_frame())
            position = int(rng.choice([1] + list(range(3, len(frame)))))
            frame[position] ^= 1 << int(rng.integers(0, 8))
            await host.expect_nak(ctx, bytes(frame), Status.BAD_CRC)
        elif kind == "truncated":   # a prefix, then silence longer than the timeout
            frame = harmful_frame()
            await host.send(ctx, frame[:int(rng.integers(1, len(frame)))])
            reply, done = await host.receive(ctx, TIMEOUT + 40)
            assert (reply.command, reply.payload) == (NAK, bytes([Status.TRUNCATED]))
        elif kind == "bad_command":
            command = int(rng.choice([7, 0x3F, 0x81, 0xFE, NAK]))
            payload = bytes(rng.integers(0, 256, int(rng.integers(0, 9))).tolist())
            await host.expect_nak(ctx, encode_frame(command, payload), Status.BAD_COMMAND)
        else:
            command, size = BAD_LENGTHS[int(rng.integers(0, len(BAD_LENGTHS)))]
            assert check_request(command, size) == Status.BAD_LENGTH
            payload = bytes(rng.integers(0, 256, size).tolist())
            await host.expect_nak(ctx, encode_frame(command, payload), Status.BAD_LENGTH)

    async def maybe_bad(ctx, host):
        while rng.random() < 0.6:
            await bad_segment(ctx, host)

    async def timed(ctx, host, command, payload=b""):
        elements = len(payload) // max(1, REQUEST_RULES[command][0])
        reply, cycles = await host.exchange(ctx, encode_frame(command, payload),
                                            reply_bound(build, command, elements))
        assert reply.command == command | REPLY_FLAG and reply.payload[:1] == bytes([Status.OK]), reply
        return reply.payload[1:]

    async def bench(ctx, link):
        host = LinkBench(link, rng, tx_stall=0.3, gap=0.1)
        await maybe_bad(ctx, host)
        writes = image.writes.tolist()
        for start in range(0, len(writes), 31):
            await timed(ctx, host, Command.WRITE, pack_writes(writes[start:start + 31]))
            await maybe_bad(ctx, host)
        good = len(range(0, len(writes), 31))
        for t in range(x.shape[0]):
            channels = channels_of(x[t], rng)
            split = int(rng.integers(0, len(channels) + 1))
            if rng.random() < 0.5:
                await timed(ctx, host, Command.EVENTS, pack_channels(channels[:split]))
                good += 1
                await maybe_bad(ctx, host)
                channels = channels[split:]
            if rng.random() < 0.3:
                await timed(ctx, host, Command.PING)
                good += 1
                await maybe_bad(ctx, host)
            bitmap = await timed(ctx, host, Command.STEP, pack_channels(channels))
            good += 1
            assert unpack_bitmap(bitmap, build.neurons) == spikes_of(trace, t), f"step {t}"
            await maybe_bad(ctx, host)
            if rng.random() < 0.4:
                steps_read = pack_reads([(READ_TARGETS["counter"], Counter.STEPS)])
                values = await timed(ctx, host, Command.READ, steps_read)
                assert int.from_bytes(values, "little") == t + 1
                good += 1
                await maybe_bad(ctx, host)
        for kind in injected:       # every kind at least twice, whatever the draws were
            while injected[kind] < 2:
                await bad_segment(ctx, host, kind)
        raw = await timed(ctx, host, Command.STATS)          # counts the frames before it
        stats = {n: int.from_bytes(raw[4 * i:4 * i + 4], "little")
                 for i, n in enumerate(("frames_ok", "frames_bad", "bad_crc", "truncated", "bad_command",
                                        "bad_length"))}
        assert stats == dict(frames_ok=good, frames_bad=sum(injected.values()), **injected)

    simulate(build, bench)


class ReferenceLink:
    """What a HostLink answers, from :mod:`delrec.firmware.protocol` alone.

    :class:`~delrec.firmware.protocol.FrameDecoder` frames the bytes,
    :func:`~delrec.firmware.protocol.check_request` judges each good frame,
    and WRITE, CLEAR and READ are refused while a step is open. Replies are
    ``(command, status)``.
    """

    def __init__(self):
        self.decoder = FrameDecoder()
        self.step_open = False
        self.counts = dict(frames_ok=0, bad_crc=0, truncated=0, bad_command=0, bad_length=0)

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        replies = []
        for byte in data:
            corrupt = self.decoder.errors[Status.BAD_CRC]
            frame = self.decoder.feed(byte)
            if self.decoder.errors[Status.BAD_CRC] != corrupt:
                self.counts["bad_crc"] += 1
                replies.append((NAK, Status.BAD_CRC))
            elif frame is not None:
                replies.append(self._answer(frame))
        return replies

    def _answer(self, frame: protocol.Frame) -> tuple[int, int]:
        status = check_request(frame.command, len(frame.payload))
        if status == Status.OK and self.step_open and frame.command in (Command.WRITE, Command.CLEAR,
                                                                         Command.READ):
            status = Status.STEP_OPEN
        if status != Status.OK:  # a refusal while a step is open counts as a bad command
            counter = "bad_command" if status == Status.STEP_OPEN else Status(status).name.lower()
            self.counts[counter] += 1
            return NAK, status
        self.counts["frames_ok"] += 1
        if frame.command in (Command.EVENTS, Command.STEP):
            self.step_open = frame.command == Command.EVENTS
        return frame.command | REPLY_FLAG, Status.OK

    def timeout(self) -> list[tuple[int, int]]:
        if self.decoder.timeout():
            self.counts["truncated"] += 1
            return [(NAK, Status.TRUNCATED)]
        return []


def test_corrupted_streams_match_the_reference_receiver():
    """Frames with bits flipped anywhere (sync and length too), cut short, or wrapped in
    garbage that may hold sync bytes: the link answers exactly what
    :class:`ReferenceLink` (the protocol module's receiver) predicts, never
    hangs, and its STATS equal the reference's counts."""
    build = CoreBuild(inputs=3, neurons=4, classes=1, spec=SPEC, lanes=1)
    rng = np.random.default_rng(11)
    reference = ReferenceLink()

    def random_frame() -> bytes:
        if rng.random() < 0.2:      # any command code, any payload size: often unknown or mis-sized
            command = int(rng.choice([int(rng.integers(0, 256)), int(rng.integers(0, len(Command)))]))
            return encode_frame(command, bytes(rng.integers(0, 256, int(rng.integers(0, 13))).tolist()))
        command = Command(int(rng.integers(0, len(Command))))
        size, low, high = REQUEST_RULES[command]
        count = int(rng.integers(max(low, 0), min(high, 4) + 1)) if size else 0
        if command == Command.WRITE:
            payload = pack_writes([(int(rng.integers(0, 8)), int(rng.integers(0, 32)),
                                    int(rng.integers(0, 256))) for _ in range(count)])
        elif command == Command.READ:
            payload = pack_reads([(int(rng.integers(0, 4)), int(rng.integers(0, 4))) for _ in range(count)])
        else:
            payload = pack_channels(rng.integers(0, 4, count))
        return encode_frame(command, payload)

    def corrupt(frame: bytes) -> bytes:
        frame = bytearray(frame)
        kind = rng.choice(["none", "flip", "cut", "garbage"], p=[0.35, 0.3, 0.15, 0.2])
        if kind == "flip":
            for _ in range(int(rng.integers(1, 4))):
                frame[int(rng.integers(0, len(frame)))] ^= 1 << int(rng.integers(0, 8))
        elif kind == "cut":
            frame = frame[:int(rng.integers(1, len(frame)))]
        elif kind == "garbage":
            junk = bytes(rng.choice([SYNC, 0x00, 0x04, 0xFF, 0x5A],
                                    int(rng.integers(1, 6))).tolist())
            frame = junk + frame if rng.random() < 0.5 else frame + junk
        return bytes(frame)

    async def bench(ctx, link):
        host = LinkBench(link, rng, tx_stall=0.2)

        async def expect(replies):
            for command, status in replies:
                reply, _ = await host.receive(ctx, 5_000)
                assert (reply.command, reply.payload[0]) == (command, status), \
                    f"reply {reply}, the reference answers 0x{command:02x} status {status}"

        for _ in range(90):
            chunk = corrupt(random_frame())
            await host.send(ctx, chunk)
            await expect(reference.feed(chunk))
            if reference.decoder.in_frame:
                await host.idle(ctx, TIMEOUT)
                await expect(reference.timeout())
            await host.idle(ctx, 2)
            assert not host.replies, f"unexpected replies {list(host.replies)}"
        if reference.step_open:
            await host.send(ctx, encode_frame(Command.STEP))
            await expect(reference.feed(encode_frame(Command.STEP)))
        stats = await host.stats(ctx)                        # counts the frames before it
        bad = sum(value for name, value in reference.counts.items() if name != "frames_ok")
        counts = dict(reference.counts, frames_bad=bad)
        assert stats == counts
        assert min(counts.values()) >= 2, f"every kind of bad frame must occur: {counts}"
        print(f"reference counts: {counts}")

    simulate(build, bench)


def test_byte_timeout_boundary():
    """``byte_timeout - 1`` idle cycles inside a frame are fine, ``byte_timeout`` truncate it."""
    build = CoreBuild(inputs=2, neurons=2, classes=1, spec=SPEC)

    async def bench(ctx, link):
        host = LinkBench(link, np.random.default_rng(0))
        frame = encode_frame(Command.PING)
        for position in range(1, len(frame)):
            await host.send(ctx, frame[:position])
            await host.idle(ctx, TIMEOUT - 1)
            reply, _ = await host.exchange(ctx, frame[position:], 100)
            assert reply.command == Command.PING | REPLY_FLAG
            await host.send(ctx, frame[:position])
            await host.idle(ctx, TIMEOUT)
            reply, _ = await host.receive(ctx, 20)
            assert (reply.command, reply.payload) == (NAK, bytes([Status.TRUNCATED]))
        assert (await host.stats(ctx))["truncated"] == len(frame) - 1

    simulate(build, bench)


def test_cycle_costs():
    """The per-command cycle costs of the HostLink docstring (tx always ready).

    ``reply``: from the edge that takes a request's last byte to the one
    that takes its reply's last; ``next``: to the one that takes the next
    request's first byte, offered at once.
    """
    build = CoreBuild(inputs=4, neurons=12, classes=2, spec=SPEC, lanes=2, queue="ring")
    image, x, trace = make_network(build, seed=4, steps=3, rate=0.6)
    bitmap = -(-build.neurons // 8)
    dropped = 7                              # a channel beyond the core's 2-bit channel field

    async def bench(ctx, link):
        host = LinkBench(link, np.random.default_rng(0))

        async def cost(frame):
            sent = await host.send(ctx, frame)
            reply, done = await host.receive(ctx, 10_000)
            taken = await host.send(ctx, b"\x00")          # not a sync byte: skipped
            return reply, done - sent, taken - sent

        async def check(command, payload, reply_cycles, next_cycles):
            reply, cycles, turnaround = await cost(encode_frame(command, payload))
            assert reply.command == command | REPLY_FLAG
            assert (cycles, turnaround) == (reply_cycles, next_cycles), \
                f"{command.name} with {len(payload)} payload bytes: reply {cycles}, next {turnaround}; " \
                f"expected {reply_cycles}, {next_cycles}"

        await check(Command.PING, b"", 18, 23)
        await check(Command.STATS, b"", 54, 59)
        await check(Command.CLEAR, b"", 9, 11)
        await host.idle(ctx, 200)                            # let the core finish clearing
        for count in (1, 2, 31):
            for target in (WriteTarget.BIAS.value, 9):       # written, or dropped by the link
                payload = pack_writes([(target, 0, 0)] * count)
                await check(Command.WRITE, payload, 10 * count + 8, 10 * count + 10)
        for count in (0, 1, 2, 3, 20):
            await check(Command.EVENTS, pack_channels([dropped] * count), 4 * count + 8, 4 * count + 10)
        await cost(encode_frame(Command.STEP))               # closes the step the EVENTS opened
        for count in (1, 2, 5):
            await check(Command.READ, pack_reads([(ReadTarget.COUNTER.value, 0)] * count),
                        12 * count + 3, 12 * count + 8)
            await check(Command.READ, pack_reads([(ReadTarget.COUNTER.value, 1 << 14)] * count),
                        9 * count + 3, 9 * count + 8)
        await host.write(ctx, image.writes.tolist())
        for t in range(x.shape[0]):
            for events in ([], [dropped] * 3):
                reply, cycles, turnaround = await cost(encode_frame(Command.STEP, pack_channels(events)))
                core_cycles, = await host.read(ctx, [(ReadTarget.COUNTER.value, Counter.CYCLES)])
                expected = 4 * len(events) + 3 * bitmap + 4 + core_cycles
                assert (cycles, turnaround) == (expected, expected + 5), f"step {t}"
        for frame, status, expected in ((encode_frame(0x42), Status.BAD_COMMAND, 7),
                                        (encode_frame(Command.PING, b"x"), Status.BAD_LENGTH, 7),
                                        (encode_frame(Command.PING)[:-1] + b"\x00", Status.BAD_CRC, 6)):
            reply, cycles, turnaround = await cost(frame)
            assert reply.payload == bytes([status]) and (cycles, turnaround) == (expected, expected + 6)
        sent = await host.send(ctx, encode_frame(Command.PING)[:3])
        reply, done = await host.receive(ctx, 100)
        assert reply.payload == bytes([Status.TRUNCATED]) and done - sent == TIMEOUT + 6

    simulate(build, bench)


# ---------------------------------------------------------------------------
# UART and the top
# ---------------------------------------------------------------------------

def line_bits(data: bytes) -> list[int]:
    """8N1 line levels of ``data``, one entry per bit."""
    return [bit for byte in data for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]]


@pytest.mark.parametrize("clocks_per_bit", [4, 5])
def test_uart_loopback(clocks_per_bit):
    """Random bytes through transmitter -> receiver, back to back, with a slow consumer."""
    m = Module()
    m.submodules.tx = transmitter = UARTTransmitter(clocks_per_bit)
    m.submodules.rx = receiver = UARTReceiver(clocks_per_bit)
    m.d.comb += receiver.rx.eq(transmitter.tx)
    data = bytes(np.random.default_rng(clocks_per_bit).integers(0, 256, 24).tolist()) + b"\x00\xff"
    received = []
    sent_edges = []

    async def producer(ctx):
        cycle = 0
        for byte in data:
            ctx.set(transmitter.data.payload, byte)
            ctx.set(transmitter.data.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(transmitter.data.ready)
                cycle += 1
                if ready:
                    sent_edges.append(cycle)
                    break
        ctx.set(transmitter.data.valid, 0)

    async def consumer(ctx):
        cycle = 0
        while len(received) < len(data):
            ctx.set(receiver.data.ready, cycle % 3 == 0)       # takes a byte within 3 cycles
            _, _, valid, ready, byte, error, overrun = await ctx.tick().sample(
                receiver.data.valid, receiver.data.ready, receiver.data.payload,
                receiver.framing_error, receiver.overrun)
            cycle += 1
            assert not error and not overrun
            if valid and ready:
                received.append(byte)
            assert cycle < 12 * clocks_per_bit * (len(data) + 2)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert bytes(received) == data
    gaps = np.diff(sent_edges)
    assert (gaps == 10 * clocks_per_bit).all(), gaps      # back to back: one character per 10 bits


def test_uart_framing_error_and_glitch():
    """A 0 stop bit drops the byte and flags it; a short low pulse is no start bit."""
    cpb = 4
    receiver = UARTReceiver(cpb)
    events = []

    async def bench(ctx):
        ctx.set(receiver.data.ready, 1)

        async def drive(levels):
            for level in levels:
                ctx.set(receiver.rx, level)
                for _ in range(cpb):
                    _, _, valid, byte, error = await ctx.tick().sample(
                        receiver.data.valid, receiver.data.payload, receiver.framing_error)
                    if valid:
                        events.append(("byte", byte))
                    if error:
                        events.append(("framing error",))

        await drive([1, 1])
        bad = line_bits(b"\x5a")
        bad[-1] = 0                                    # the stop bit reads 0
        await drive(bad + [0, 0, 1, 1])                # held low a while (a break), then idle
        assert events == [("framing error",)]
        ctx.set(receiver.rx, 0)                        # a one-cycle glitch
        await ctx.tick()
        await drive([1, 1] + line_bits(b"\xc3") + [1, 1])
        assert events == [("framing error",), ("byte", 0xC3)]

    sim = Simulator(receiver)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_host_top_ping_at_the_pins():
    """Garbage, a PING at 4 clocks per bit on ``rx``; its reply decoded from ``tx``."""
    cpb = 4
    build = CoreBuild(inputs=3, neurons=6, classes=2, spec=SPEC, lanes=2)
    top = HostTop(build, clocks_per_bit=cpb, byte_timeout=20 * cpb)
    assert set(top.signature.members.keys()) == {"rx", "tx"}
    request = b"\x13\x37" + encode_frame(Command.PING)
    replies = []

    async def host(ctx):
        for level in [1] * 4 + line_bits(request):
            ctx.set(top.rx, level)
            await ctx.tick().repeat(cpb)
        ctx.set(top.rx, 1)

    async def listener(ctx):
        decoder = FrameDecoder()
        cycles = 0
        while not replies:
            _, _, line = await ctx.tick().sample(top.tx)
            cycles += 1
            assert cycles < 40 * cpb * (len(request) + 20), "no reply on tx"
            if line:
                continue
            await ctx.tick().repeat(cpb // 2 - 1)      # the middle of the start bit
            byte = 0
            for i in range(8):
                await ctx.tick().repeat(cpb)
                byte |= ctx.get(top.tx) << i
            await ctx.tick().repeat(cpb)
            assert ctx.get(top.tx) == 1, "framing error on tx"
            await ctx.tick().repeat(cpb // 2)
            cycles += 10 * cpb
            frame = decoder.feed(byte)
            if frame is not None:
                replies.append(frame)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(listener)
    sim.run()
    reply, = replies
    assert reply.command == Command.PING | REPLY_FLAG
    assert reply.payload == bytes([Status.OK]) + top.link.ping_payload()


def test_host_top_converts_to_verilog():
    top = HostTop(CoreBuild(inputs=3, neurons=8, classes=2, spec=SPEC, lanes=2, queue="history"),
                  clocks_per_bit=4, byte_timeout=100)
    text = verilog.convert(top, name="delrec_host_top")
    assert re.search(r"input\s+rx", text) and re.search(r"output\s+tx", text)
