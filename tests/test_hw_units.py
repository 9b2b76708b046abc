"""Unit tests of the inference core's sub-components (amaranth.sim) against :mod:`delrec.arith`.

Every component is simulated on its own, outside :class:`~delrec.hw.core.InferenceCore`:

* :mod:`delrec.hw.fixed` (``saturate``, ``decay``, ``sign_extend``):
  combinational, and :class:`~delrec.hw.neuron.NeuronDatapath`: pipelined,
  evaluated on corner and random vectors and compared bit for bit with
  ``sat``, ``decay`` and ``neuron_update``;
* :class:`~delrec.hw.readout.Readout`: ``accumulate`` / ``update`` / ``clear``
  commands against a per-unit loop over ``readout_update`` (saturation of the
  value and of the score included), the learning commands (``errors`` /
  ``broadcast`` / ``learn`` / ``learn_bias``) against a model composed of
  ``step_error``, ``broadcast_signal``, ``parameter_step`` and
  ``weight_update`` (and that check against deliberately broken arithmetic,
  which it must catch), and the cycle counts its docstring gives, each with
  the weights inside the readout and behind its ``weight_port`` (a memory
  model with the documented latency, which also checks that no cycle reads
  and writes it);
* :class:`~delrec.hw.ring.FutureInputRing` and
  :class:`~delrec.hw.history.SpikeHistory`: the delay-queue contract of
  :func:`~delrec.hw.ports.delay_queue_signature`, driven step by step like the
  core drives them, against a small Python model of scheduled inputs and spike
  ages.

Each failure names the value that differs, the inputs and both results.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth.hdl import Const, Module, Signal, Value, signed, unsigned
from amaranth.sim import Simulator

from delrec.arith import (CoreSpec, broadcast_signal, clamp, decay, feedback_weight, forward_value, neuron_update,
                          parameter_step, readout_update, rshift_round, sat, signed_range, step_error,
                          weight_update)
from delrec.arith import error_shift as arith_error_shift
from delrec.build import CoreBuild
from delrec.hw import fixed
from delrec.hw import readout as readout_module
from delrec.hw import readout_learning
from delrec.hw.history import SpikeHistory
from delrec.hw.neuron import NeuronDatapath
from delrec.hw.ports import PROBE_LATENCY, RECORD_LATENCY, CoreGeometry
from delrec.hw.readout import UPDATE_STAGES, WEIGHT_LATENCY, Readout, ReadWhat
from delrec.hw.ring import FutureInputRing


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def run_sim(dut, testbench, *, clock: bool = True) -> None:
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def to_signed(raw: int, bits: int) -> int:
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def leak_bits(spec: CoreSpec) -> int:
    """The width the core gives a leak parameter (:attr:`CoreGeometry.leak_bits`)."""
    return CoreGeometry(CoreBuild(1, 1, 1, spec)).leak_bits


def corners(bits: int, is_signed: bool = True) -> list[int]:
    """Extremes, their neighbours and the values around zero of a ``bits``-bit integer."""
    if not is_signed:
        top = (1 << bits) - 1
        return sorted({0, 1, top - 1, top})
    lo, hi = signed_range(bits)
    return sorted({lo, lo + 1, -1, 0, 1, hi - 1, hi})


def values_of(bits: int, is_signed: bool, rng: np.random.Generator, count: int) -> list[int]:
    """Every value for narrow widths, else the corners and ``count`` random values."""
    lo, hi = signed_range(bits) if is_signed else (0, (1 << bits) - 1)
    if bits <= 10:
        return list(range(lo, hi + 1))
    return corners(bits, is_signed) + [int(x) for x in rng.integers(lo, hi + 1, count)]


def evaluate(inputs: list[Signal], exprs: list, vectors: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Values of the combinational ``exprs`` for each vector of ``inputs`` (one simulation)."""
    m = Module()
    outs = [Signal(Value.cast(expr).shape(), name=f"out_{n}") for n, expr in enumerate(exprs)]
    m.d.comb += [out.eq(expr) for out, expr in zip(outs, exprs)]
    results = []

    async def testbench(ctx):
        for vector in vectors:
            for signal, value in zip(inputs, vector):
                ctx.set(signal, value)
            results.append(tuple(ctx.get(out) for out in outs))

    run_sim(m, testbench, clock=False)
    return results


def check_all(what: str, names: tuple[str, ...], cases: list, got: list[tuple], want: list[tuple]) -> None:
    """Fail on the first case where an output differs, naming it, the inputs and both values."""
    assert len(got) == len(want) == len(cases)
    for case, g, w in zip(cases, got, want):
        for name, gv, wv in zip(names, g, w):
            assert gv == wv, f"{what}: {name} differs for {case}: hw {gv}, arith {wv}"


# ---------------------------------------------------------------------------
# fixed.py: saturate, decay, sign_extend
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape, bits", [
    (signed(12), 8), (signed(9), 8), (signed(17), 16), (signed(40), 32),
    (unsigned(10), 8), (unsigned(8), 8), (unsigned(4), 8),
    (signed(8), 8), (signed(5), 8),          # already in range: returned as is
], ids=str)
def test_saturate_matches_sat(shape, bits):
    rng = np.random.default_rng(bits * 100 + shape.width)
    x = Signal(shape)
    xlo, xhi = signed_range(shape.width) if shape.signed else (0, (1 << shape.width) - 1)
    lo, hi = signed_range(bits)
    values = values_of(shape.width, shape.signed, rng, 400)
    values += [v for v in (lo - 1, lo, hi, hi + 1) if xlo <= v <= xhi]   # both sides of each clamp
    got = evaluate([x], [fixed.saturate(x, bits)], [(v,) for v in values])
    want = [(sat(v, bits),) for v in values]
    check_all(f"saturate(x: {shape}, {bits})", ("result",), [{"x": v} for v in values], got, want)


def test_saturate_result_shape():
    assert fixed.saturate(Signal(signed(5)), 8).shape() == signed(8)


DECAY_CASES = [
    # mode, value width, frac bits (multiply) -- params are 0..2^f (multiply) or 0..width (shift)
    ("multiply", 6, 3),
    ("multiply", 16, 8),
    ("multiply", 24, 8),
    ("multiply", 10, 16),
    ("multiply", 12, 1),
    ("shift", 6, 8),
    ("shift", 16, 8),
    ("shift", 24, 8),
]


@pytest.mark.parametrize("mode, width, frac_bits", DECAY_CASES)
def test_decay_matches_arith(mode, width, frac_bits):
    rng = np.random.default_rng(width * 31 + frac_bits)
    top = (1 << frac_bits) if mode == "multiply" else width
    param_bits = frac_bits + 1 if mode == "multiply" else width.bit_length()
    x = Signal(signed(width))
    param = Signal(unsigned(param_bits))
    lo, hi = signed_range(width)
    if width <= 6:
        vectors = list(itertools.product(range(lo, hi + 1), range(top + 1)))
    else:
        params = sorted({0, 1, 2, top // 2, top - 1, top})
        vectors = list(itertools.product(corners(width), params))
        vectors += [(int(v), int(p)) for v, p in zip(rng.integers(lo, hi + 1, 400),
                                                     rng.integers(0, top + 1, 400))]
        if mode == "shift":
            vectors += [(v, p) for v in corners(width) for p in range(top + 1)]
    got = evaluate([x, param], [fixed.decay(x, param, mode, frac_bits)], vectors)
    want = [(decay(v, p, mode, frac_bits),) for v, p in vectors]
    check_all(f"decay({mode}, signed({width}), f={frac_bits})", ("result",),
              [{"x": v, "param": p} for v, p in vectors], got, want)


def test_decay_rejects_unknown_mode():
    with pytest.raises(ValueError, match="Leak mode"):
        fixed.decay(Signal(signed(8)), Signal(4), "divide", 4)


@pytest.mark.parametrize("shape, bits", [
    (unsigned(8), 8), (unsigned(12), 8), (unsigned(6), 3), (signed(8), 8), (signed(10), 4),
    (signed(4), 8),
], ids=str)
def test_sign_extend_low_bits(shape, bits):
    x = Signal(shape)
    lo, hi = (signed_range(shape.width) if shape.signed else (0, (1 << shape.width) - 1))
    values = list(range(lo, hi + 1))
    got = evaluate([x], [fixed.sign_extend(x, bits)], [(v,) for v in values])
    want = [(to_signed(v, bits),) for v in values]   # two's complement: low `bits` bits of the value
    check_all(f"sign_extend(x: {shape}, {bits})", ("result",), [{"x": v} for v in values], got, want)


def test_sign_extend_narrow_unsigned():
    x = Signal(unsigned(4))
    got = evaluate([x], [fixed.sign_extend(x, 8)], [(8,)])
    assert got == [(8,)], f"sign_extend(unsigned(4) 8, 8): hw {got[0][0]}, expected 8"


@pytest.mark.parametrize("words, width, bank_bits, expected", [
    (17920, 16, 16384, 1024),   # SHD-size input weights on the ECP5: one DP16KD (1K x 18) a bank
    (5120, 8, 16384, 2048),     # readout weights: 2K x 9
    (100, 16, None, 100),       # no banks
    (10, 16, 16384, 10),        # fits one bank: left whole
    (5, 16, 32, 2),
    (5, 16, 40, 2),             # the largest power of two of words that fits
])
def test_words_per_bank(words, width, bank_bits, expected):
    assert fixed.words_per_bank(words, width, bank_bits) == expected


@pytest.mark.parametrize("bank_bits", [0, 1000, -16, True, 16.0])
def test_bank_bits_must_be_a_power_of_two(bank_bits):
    with pytest.raises(ValueError, match=f"Weight bank size must be a power of two \\(bits\\), not {bank_bits!r}"):
        fixed.check_bank_bits(bank_bits)


# ---------------------------------------------------------------------------
# neuron.py: NeuronDatapath
# ---------------------------------------------------------------------------

NEURON_SPECS = [
    CoreSpec(),
    CoreSpec(leak="shift"),
    CoreSpec(v_bits=10, acc_bits=12),
    CoreSpec(v_bits=10, acc_bits=12, leak="shift"),
    CoreSpec(v_bits=12, acc_bits=20, decay_bits=4),
]


def neuron_vectors(spec: CoreSpec, rng: np.random.Generator, count: int) -> list[dict]:
    """Corner products, random draws, and draws placed exactly at and just below the threshold."""
    vlo, vhi = signed_range(spec.v_bits)
    alo, ahi = signed_range(spec.acc_bits)
    plo, phi = spec.leak_param_range()
    cases = []
    few = sorted({vlo, -1, 0, 1, vhi})
    for v, current, bias, theta, leak, reset in itertools.product(
            few, sorted({alo, -1, 0, 1, ahi}), few, (1, vhi), sorted({plo, 1, phi}), ("hard", "soft")):
        cases.append(dict(v=v, current=current, bias=bias, theta=theta, leak=leak, reset=reset))
    for _ in range(count):
        case = dict(v=int(rng.integers(vlo, vhi + 1)), current=int(rng.integers(alo, ahi + 1)),
                    bias=int(rng.integers(vlo, vhi + 1)), theta=int(rng.integers(1, vhi + 1)),
                    leak=int(rng.integers(plo, phi + 1)), reset=str(rng.choice(["hard", "soft"])))
        cases.append(case)
        # the same neuron with the current chosen so that h lands on theta or theta - 1
        leaked = decay(case["v"], case["leak"], spec.leak, spec.decay_bits)
        for target in (case["theta"], case["theta"] - 1):
            current = target - leaked - case["bias"]
            if alo <= current <= ahi:
                cases.append(dict(case, current=current))
    return cases


@pytest.mark.parametrize("spec", NEURON_SPECS,
                         ids=lambda s: f"{s.leak}-v{s.v_bits}-acc{s.acc_bits}-f{s.decay_bits}")
def test_neuron_datapath_matches_neuron_update(spec):
    rng = np.random.default_rng(spec.v_bits * 7 + spec.acc_bits + (spec.leak == "shift"))
    dut = NeuronDatapath(spec, leak_bits(spec))
    cases = neuron_vectors(spec, rng, 250)
    got = []

    async def testbench(ctx):
        for case in cases:
            ctx.set(dut.membrane, case["v"])
            ctx.set(dut.current, case["current"])
            ctx.set(dut.bias, case["bias"])
            ctx.set(dut.theta, case["theta"])
            ctx.set(dut.leak, case["leak"])
            ctx.set(dut.soft_reset, case["reset"] == "soft")
            await ctx.tick().repeat(NeuronDatapath.LATENCY)
            got.append((ctx.get(dut.charge), ctx.get(dut.spike), ctx.get(dut.membrane_next)))

    run_sim(dut, testbench)
    want = [neuron_update(c["v"], c["current"], c["bias"], c["theta"], c["leak"], c["reset"], spec)
            for c in cases]
    check_all(f"NeuronDatapath({spec.leak}, v{spec.v_bits}, acc{spec.acc_bits})",
              ("h", "spike", "v_next"), cases, got, want)
    # the vectors reach both clamps, both spike outcomes, h exactly on theta, a nonzero soft reset
    vlo, vhi = signed_range(spec.v_bits)
    hs = {h for h, _, _ in want}
    assert vlo in hs and vhi in hs
    assert {s for _, s, _ in want} == {0, 1}
    assert any(c["theta"] == h for c, (h, _, _) in zip(cases, want) if c["theta"] != vhi)
    assert any(c["reset"] == "soft" and s and v for c, (_, s, v) in zip(cases, want))


# ---------------------------------------------------------------------------
# readout.py: Readout
# ---------------------------------------------------------------------------

#: The weight memory of a :class:`Readout`: inside (whole, or in banks of 16 bits) or behind ``weight_port``.
MEMORIES = {"whole": dict(weight_bank_bits=None), "banks-of-16b": dict(weight_bank_bits=16),
            "port": dict(weight_port=True)}


class WeightPortModel:
    """The memory behind ``Readout.weight_port``: a read's word on ``read_data`` exactly ``WEIGHT_LATENCY``
    cycles later (other cycles: a changing junk word), writes at the end of their cycle.

    Records every access as ``(cycle, "R" or "W", addr)`` (cycle 1 is the first of the simulation) and
    a violation for a read and a write in one cycle or an address out of range.
    """

    def __init__(self, dut: Readout, spec: CoreSpec, words: int):
        self.dut, self.bits, self.words = dut, spec.weight_store_bits, [0] * words
        self.accesses, self.violations = [], []

    async def process(self, ctx):
        port = self.dut.weight_port
        pending = [None] * (WEIGHT_LATENCY - 1)     # words due on read_data, oldest first
        cycle = 0
        async for _, _, addr, read_en, write_en, data in ctx.tick().sample(
                port.addr, port.read_en, port.write_en, port.write_data):
            cycle += 1
            word = None
            if read_en and write_en:
                self.violations.append(f"cycle {cycle}: read and write at once (address {addr})")
            if (read_en or write_en) and addr >= len(self.words):
                self.violations.append(f"cycle {cycle}: address {addr} out of range")
            elif read_en:
                word = self.words[addr]
                self.accesses.append((cycle, "R", addr))
            elif write_en:
                self.words[addr] = to_signed(data, self.bits)
                self.accesses.append((cycle, "W", addr))
            pending.append(word)
            due = pending.pop(0)
            junk = to_signed((cycle * 0x9E37 + 0x5A5) & ((1 << self.bits) - 1), self.bits)
            ctx.set(port.read_data, junk if due is None else due)


def run_readout(dut: Readout, testbench, *background, model: WeightPortModel | None = None) -> None:
    """Simulate ``dut`` with ``testbench``, background testbenches and, with ``weight_port``, its memory."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    for bench in background:
        sim.add_testbench(bench, background=True)
    if model is not None:
        sim.add_process(model.process)
    sim.run()
    assert model is None or not model.violations, "\n".join(model.violations[:10])


def make_readout(neurons: int, classes: int, spec: CoreSpec, memory: str, learning: bool):
    """A :class:`Readout` with the weight memory ``memory`` (:data:`MEMORIES`) and its port model if any."""
    dut = Readout(neurons, classes, spec, leak_bits(spec), learning=learning, **MEMORIES[memory])
    return dut, (WeightPortModel(dut, spec, neurons * classes) if memory == "port" else None)


class ReadoutBench:
    """Drives a :class:`Readout` like the core does: commands when ``ready``, reads when idle."""

    def __init__(self, dut: Readout, rng: np.random.Generator, gap: float = 0.3):
        self.dut, self.rng, self.gap = dut, rng, gap

    async def idle(self, ctx):
        while self.rng.random() < self.gap:
            await ctx.tick()

    async def command(self, ctx, name: str, **fields):
        await self.idle(ctx)
        while not ctx.get(self.dut.ready):
            await ctx.tick()
        for field, value in fields.items():
            ctx.set(getattr(self.dut, field), value)
        ctx.set(getattr(self.dut, name), 1)
        await ctx.tick()
        ctx.set(getattr(self.dut, name), 0)

    async def settle(self, ctx):
        while ctx.get(self.dut.busy):
            await ctx.tick()

    async def write(self, ctx, kind: str, addr: int, value: int):
        ctx.set(getattr(self.dut, f"{kind}_write_en"), 1)
        ctx.set(getattr(self.dut, f"{kind}_write_addr"), addr)
        ctx.set(getattr(self.dut, f"{kind}_write_data"), value)
        await ctx.tick()
        ctx.set(getattr(self.dut, f"{kind}_write_en"), 0)

    async def read(self, ctx, addr: int, what: ReadWhat, bits: int) -> int:
        """The element ``what`` at ``addr``, once ``read_valid`` comes at its documented cycle."""
        ctx.set(self.dut.read_en, 1)
        ctx.set(self.dut.read_addr, addr)
        ctx.set(self.dut.read_what, what)
        await ctx.tick()
        ctx.set(self.dut.read_en, 0)
        cycles, want = 1, WEIGHT_LATENCY if what == ReadWhat.WEIGHT else 1
        while not ctx.get(self.dut.read_valid) and cycles < want:
            await ctx.tick()
            cycles += 1
        assert ctx.get(self.dut.read_valid) and cycles == want, \
            f"read of {what.name} {addr}: read_valid after {cycles} cycles, documented {want}"
        return to_signed(ctx.get(self.dut.read_data), bits)


def spec_id(x):
    if isinstance(x, CoreSpec):
        return f"{x.leak}-r{x.readout_bits}-s{x.score_bits}-wf{x.weight_frac_bits}-fb{x.feedback_frac_bits}"
    return str(x)


def stored_values(bits: int, rng: np.random.Generator, shape) -> np.ndarray:
    """Random stored copies of ``bits`` bits, a third of them the extremes or their neighbours."""
    lo, hi = signed_range(bits)
    values = rng.integers(lo, hi + 1, shape)
    picks = rng.random(shape) < 0.33
    values[picks] = rng.choice([lo, lo + 1, hi - 1, hi], shape)[picks]
    return values.astype(int)


READOUT_CASES = [
    (CoreSpec(acc_bits=12, readout_bits=10, score_bits=12), 4, 3),
    (CoreSpec(acc_bits=12, readout_bits=10, score_bits=12, leak="shift"), 3, 2),
    (CoreSpec(acc_bits=12, readout_bits=10, score_bits=10, decay_bits=4), 2, 1),
    (CoreSpec(), 5, 4),
    (CoreSpec(acc_bits=12, readout_bits=10, score_bits=12, weight_frac_bits=4), 4, 3),
]


@pytest.mark.parametrize("spec, neurons, classes", READOUT_CASES, ids=spec_id)
@pytest.mark.parametrize("memory", sorted(MEMORIES))
@pytest.mark.parametrize("learning", [False, True], ids=["inference", "learning"])
def test_readout_matches_readout_update(spec, neurons, classes, memory, learning):
    """Random spikes per step; biases moderate, then extreme (clamps), then a clear, then moderate.

    Weights and biases are stored learning copies (``weight_frac_bits`` more
    bits) whose forward values the readout uses; ``count`` is low for some
    steps (the score stays). ``banks-of-16b``: the weights in banks of one or
    two words (a bank choice on every read); ``port``: behind ``weight_port``,
    in :class:`WeightPortModel`. Every stored weight and bias is read back at
    the end.
    """
    N, K, T, wf = neurons, classes, 18, spec.weight_frac_bits
    rng = np.random.default_rng(N * 10 + K + spec.readout_bits + wf)
    dut, model = make_readout(N, K, spec, memory, learning)
    bench = ReadoutBench(dut, rng)
    rlo, rhi = signed_range(spec.readout_bits)
    blo, bhi = signed_range(spec.readout_bias_store_bits)
    plo, phi = spec.leak_param_range()
    w_out = stored_values(spec.weight_store_bits, rng, (K, N))

    def moderate():
        return [int(b) for b in rng.integers(rlo << wf >> 2, (rhi << wf >> 2) + 1, K)]

    extreme = [bhi if k % 2 == 0 else blo for k in range(K)]
    phases = {0: moderate(), 3: extreme, 12: moderate()}      # step -> stored biases written before it
    counts = [int(t not in (2, 7, 8) and rng.random() < 0.85) for t in range(T)]
    bias = [0] * K
    state = {"R": [0] * K, "V": [0] * K, "score": [0] * K}
    clipped = {"V": set(), "score": set()}
    mismatches = []

    def model_update(leak, count):
        for k in range(K):
            b = forward_value(bias[k], wf)
            raw_v = decay(state["V"][k], leak, spec.leak, spec.decay_bits) + state["R"][k] + b
            v, score = readout_update(state["V"][k], state["R"][k], b, leak, state["score"][k], spec,
                                      counts=bool(count))
            if v != raw_v:
                clipped["V"].add(v)
            if count and score != state["score"][k] + v:
                clipped["score"].add(score)
            state["V"][k], state["score"][k], state["R"][k] = v, score, 0

    async def compare(ctx, t):
        for k in range(K):
            for name, what, bits in (("V", ReadWhat.VALUE, spec.readout_bits),
                                     ("score", ReadWhat.SCORE, spec.score_bits)):
                got = await bench.read(ctx, k, what, bits)
                if got != state[name][k]:
                    mismatches.append(f"step {t}: {name}[{k}] hw {got}, readout_update {state[name][k]}")

    async def testbench(ctx):
        for j in range(N):
            for k in range(K):
                await bench.write(ctx, "weight", j * K + k, int(w_out[k, j]))
        for t in range(T):
            if t in phases:
                for k in range(K):
                    bias[k] = phases[t][k]
                    await bench.write(ctx, "bias", k, bias[k])
            if t == 12:        # accumulate without an update, then clear: R, V and scores drop
                await bench.command(ctx, "accumulate", neuron=N - 1)
                await bench.command(ctx, "clear")
                await bench.settle(ctx)
                state.update(R=[0] * K, V=[0] * K, score=[0] * K)
                await compare(ctx, f"{t} (after clear)")
            spikes = [j for j in range(N) if rng.random() < 0.6]
            for j in spikes:
                await bench.command(ctx, "accumulate", neuron=j)
                for k in range(K):
                    state["R"][k] += forward_value(int(w_out[k, j]), wf)
            leak = int(rng.choice([plo, phi, int(rng.integers(plo, phi + 1))]))
            ctx.set(dut.leak, leak)
            ctx.set(dut.count, counts[t])
            await bench.command(ctx, "update")
            await bench.settle(ctx)
            ctx.set(dut.count, 0)
            model_update(leak, counts[t])
            await compare(ctx, t)
        for j in range(N):
            for k in range(K):
                got = await bench.read(ctx, j * K + k, ReadWhat.WEIGHT, spec.weight_store_bits)
                if got != w_out[k, j]:
                    mismatches.append(f"read back: w_out[{k}, {j}] hw {got}, written {w_out[k, j]}")
        for k in range(K):
            got = await bench.read(ctx, k, ReadWhat.BIAS, spec.readout_bias_store_bits)
            if got != bias[k]:
                mismatches.append(f"read back: b_out[{k}] hw {got}, written {bias[k]}")

    run_readout(dut, testbench, model=model)
    assert not mismatches, "\n".join(mismatches[:10])
    # the value and the score were clamped on both sides (readout_update's sat_r and sat_s)
    if spec.readout_bits <= 10 and K > 1:
        assert clipped["V"] == {rlo, rhi}, f"value clamps reached: {clipped['V']}"
        slo, shi = signed_range(spec.score_bits)
        assert clipped["score"] == {slo, shi}, f"score clamps reached: {clipped['score']}"


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("learning", [False, True], ids=["inference", "learning"])
@pytest.mark.parametrize("memory", ["whole", "port"])
def test_readout_command_cycles(classes, learning, memory):
    """``accumulate`` keeps ``busy`` K + 3 cycles (``ready`` low K), ``update`` K + 5 (``ready`` low as long), ``clear`` K.

    The same with the learning commands built, and with the weights behind
    ``weight_port`` (the accumulation's reads of ``w_out[k, 1]`` in its
    cycles ``k + 1``, nothing else). Host reads: ``read_valid`` one cycle
    after ``read_en`` (value, score, bias) or ``WEIGHT_LATENCY`` (a weight),
    ``read_data`` held until the next read.
    """
    K = classes
    spec = CoreSpec(weight_frac_bits=4)
    dut, model = make_readout(2, K, spec, memory, learning)
    counts, reads, strobes = {}, [], {}

    async def testbench(ctx):
        await ReadoutBench(dut, np.random.default_rng(0)).write(ctx, "weight", K + K - 1, -1234)
        cycle = 2
        for name, fields in (("accumulate", {"neuron": 1}), ("update", {"count": 1}), ("clear", {})):
            for field, value in fields.items():
                ctx.set(getattr(dut, field), value)
            assert ctx.get(dut.ready), f"ready low before {name}"
            strobes[name] = cycle
            ctx.set(getattr(dut, name), 1)
            await ctx.tick()
            cycle += 1
            ctx.set(getattr(dut, name), 0)
            busy = not_ready = 0
            while ctx.get(dut.busy):
                busy += 1
                not_ready += not ctx.get(dut.ready)
                await ctx.tick()
                cycle += 1
            counts[name] = (busy, not_ready)
        for what, addr in ((ReadWhat.WEIGHT, K + K - 1), (ReadWhat.VALUE, 0)):
            ctx.set(dut.read_en, 1)
            ctx.set(dut.read_addr, addr)
            ctx.set(dut.read_what, what)
            await ctx.tick()
            ctx.set(dut.read_en, 0)
            pulses = []
            for c in range(1, 7):
                pulses.append((c, ctx.get(dut.read_valid), ctx.get(dut.read_data)))
                await ctx.tick()
            reads.append((what, pulses))

    run_readout(dut, testbench, model=model)
    stages = UPDATE_STAGES
    want = {"accumulate": (K + 3, K), "update": (K + stages, K + stages), "clear": (K, K)}
    for name in want:
        assert counts[name] == want[name], \
            f"{name} (K={K}): (busy, not ready) cycles hw {counts[name]}, docstring {want[name]}"
    for what, pulses in reads:
        at = WEIGHT_LATENCY if what == ReadWhat.WEIGHT else 1
        value = -1234 & ((1 << spec.weight_store_bits) - 1) if what == ReadWhat.WEIGHT else 0  # zero-extended
        assert [c for c, valid, _ in pulses if valid] == [at], f"{what.name} read_valid cycles: {pulses}"
        assert all(data == value for c, _, data in pulses if c >= at), f"{what.name} read_data not held: {pulses}"
    if model is not None:
        s = strobes["accumulate"]
        port = [(c - s, kind, addr) for c, kind, addr in model.accesses if kind == "R" and s < c < s + K + 4]
        assert port == [(k + 1, "R", K + k) for k in range(K)], f"accumulate's weight reads: {port}"
        assert model.accesses[0] == (1, "W", K + K - 1) and model.accesses[-1][1:] == ("R", K + K - 1), \
            f"host write and read through the port: {model.accesses}"


# -- the learning commands -------------------------------------------------------------

LEARNING_SPECS = [
    CoreSpec(weight_frac_bits=8, feedback_frac_bits=0),
    CoreSpec(weight_frac_bits=8, feedback_frac_bits=4, readout_bits=12, score_bits=16),
    CoreSpec(weight_frac_bits=8, feedback_frac_bits=4, readout_bits=12, score_bits=16, leak="shift"),
]


def learning_mismatches(spec: CoreSpec, K: int, memory: str, seed: int, N: int = 6, T: int = 6):
    """Run ``T`` learning steps on a :class:`Readout` and on a model written with arith functions only.

    Each step: random spikes accumulated, update (``count`` random), errors
    (label, target, ``error_shift``, ``shift`` from corner lists), broadcast
    (every ``signal_valid`` pulse compared with ``broadcast_signal``), learn
    for a random subset of neurons (the first two back to back), learn_bias
    (most steps). Before the ``shift = 0`` steps' updates the host writes
    the biases at one limit (``V`` away from the target), and before their
    learns the copies of the first neuron learned and the biases at the
    limit their step pushes them past, so that the updates saturate. Then every stored weight and bias, ``V`` and the
    scores are read back. ``memory``: a key of :data:`MEMORIES` (``port``:
    :class:`WeightPortModel`, which also checks that no cycle reads and
    writes it). Returns the mismatches and what the model saw saturate.
    """
    rng = np.random.default_rng(seed)
    dut, model = make_readout(N, K, spec, memory, True)
    bench = ReadoutBench(dut, rng)
    wf, wsb, bsb, sb = spec.weight_frac_bits, spec.weight_store_bits, spec.readout_bias_store_bits, spec.signal_bits
    W = stored_values(wsb, rng, (K, N)).tolist()
    B = stored_values(bsb, rng, K).tolist()
    V, score = [0] * K, [0] * K
    rlo, rhi = signed_range(spec.readout_bits)
    plo, phi = spec.leak_param_range()
    label_top = (1 << K.bit_length()) - 1
    labels = [0, K, label_top, K - 1] + [int(x) for x in rng.integers(0, K + 1, T)]
    shifts = [0, 63, 1, 0, spec.readout_bits + 2, 4] + [int(x) for x in rng.integers(0, 64, T)]
    targets = {0: rhi, 3: rlo}      # the shift-0 steps: errors of both signs
    biases_before = {0: signed_range(bsb)[0], 3: signed_range(bsb)[1]}
    mismatches, seen, pulses = [], {"w": set(), "b": set(), "L": set(), "e": set()}, []

    async def monitor(ctx):
        while True:
            await ctx.tick()
            if ctx.get(dut.signal_valid):
                pulses.append((ctx.get(dut.signal_neuron), to_signed(ctx.get(dut.signal_value), sb)))

    async def testbench(ctx):
        for j in range(N):
            for k in range(K):
                await bench.write(ctx, "weight", j * K + k, W[k][j])
        for k in range(K):
            await bench.write(ctx, "bias", k, B[k])
        for t in range(T):
            spikes = [] if t == 2 else [j for j in range(N) if rng.random() < 0.5]
            R = [sum(forward_value(W[k][j], wf) for j in spikes) for k in range(K)]
            for j in spikes:
                await bench.command(ctx, "accumulate", neuron=j)
            if t in biases_before:   # V far from the target's side: the shift-0 errors are large
                await bench.settle(ctx)
                for k in range(K):
                    B[k] = biases_before[t]
                    await bench.write(ctx, "bias", k, B[k])
            leak, count = int(rng.integers(plo, phi + 1)), int(t != 1 and rng.random() < 0.8)
            ctx.set(dut.leak, leak)
            ctx.set(dut.count, count)
            await bench.command(ctx, "update")
            await bench.settle(ctx)
            for k in range(K):
                V[k], score[k] = readout_update(V[k], R[k], forward_value(B[k], wf), leak, score[k], spec,
                                                counts=bool(count))
            # errors: err_k, e_k and the steps
            label = labels[t]
            target = targets.get(t, int(rng.choice([rlo, rhi, 0, int(rng.integers(rlo, rhi + 1))])))
            e_shift = [0, arith_error_shift(target, sb), 1, 40, 3, 63][t % 6]
            shift = shifts[t]
            for name, value in (("label", label), ("target", target), ("error_shift", e_shift), ("shift", shift)):
                ctx.set(getattr(dut, name), value)
            await bench.command(ctx, "errors")
            err = [V[k] - (target if k == label else 0) for k in range(K)]
            e = [step_error(x, e_shift, sb) for x in err]
            seen["e"].update(x for x in e if abs(x) == (1 << (sb - 1)) - 1)
            # broadcast: every L_i, in order, from the weights before this step's learns
            pulses.clear()
            await bench.command(ctx, "broadcast")
            await bench.settle(ctx)
            want = [(i, broadcast_signal(sum(e[k] * feedback_weight(W[k][i], spec) for k in range(K)), spec))
                    for i in range(N)]
            seen["L"].update(L for _, L in want if abs(L) >= (1 << (sb - 1)) - 1)
            if pulses != want:
                mismatches.append(f"step {t}: broadcast (i, L_i) hw {pulses}, arith {want}")
            # learn: a random subset of neurons, the first two back to back; learn_bias most steps
            learned = [int(j) for j in rng.permutation(N)[:int(rng.integers(2, N + 1))]]
            if shift == 0:   # copies at the limit the step pushes them past: the updates saturate
                for k in (k for k in range(K) if err[k]):
                    W[k][learned[0]] = signed_range(wsb)[err[k] < 0]
                    B[k] = signed_range(bsb)[err[k] < 0]
                    await bench.write(ctx, "weight", learned[0] * K + k, W[k][learned[0]])
                    await bench.write(ctx, "bias", k, B[k])
            for n, j in enumerate(learned):
                bench.gap = 0.0 if n < 2 else 0.3
                await bench.command(ctx, "learn", neuron=j)
                for k in range(K):
                    step = parameter_step(err[k], shift)
                    if weight_update(W[k][j], step, wsb) != W[k][j] - step:
                        seen["w"].add(weight_update(W[k][j], step, wsb))
                    W[k][j] = weight_update(W[k][j], step, wsb)
            if t != 4:      # then the next accumulations follow the learns directly
                await bench.command(ctx, "learn_bias")
                for k in range(K):
                    step = parameter_step(err[k], shift)
                    if weight_update(B[k], step, bsb) != B[k] - step:
                        seen["b"].add(weight_update(B[k], step, bsb))
                    B[k] = weight_update(B[k], step, bsb)
        await bench.settle(ctx)
        for j in range(N):
            for k in range(K):
                got = await bench.read(ctx, j * K + k, ReadWhat.WEIGHT, wsb)
                if got != W[k][j]:
                    mismatches.append(f"w_out[{k}, {j}] hw {got}, arith {W[k][j]}")
        for k in range(K):
            for name, what, want, bits in (("b_out", ReadWhat.BIAS, B[k], bsb),
                                           ("V", ReadWhat.VALUE, V[k], spec.readout_bits),
                                           ("score", ReadWhat.SCORE, score[k], spec.score_bits)):
                got = await bench.read(ctx, k, what, bits)
                if got != want:
                    mismatches.append(f"{name}[{k}] hw {got}, arith {want}")

    run_readout(dut, testbench, monitor, model=model)
    return mismatches, seen


@pytest.mark.parametrize("spec", LEARNING_SPECS, ids=spec_id)
@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("memory", sorted(MEMORIES))
def test_readout_learning_matches_arith(spec, classes, memory):
    """errors, broadcast, learn, learn_bias against step_error, broadcast_signal, parameter_step, weight_update.

    Stored weights and biases span their saturation limits; the updates
    saturate both ways (``shift = 0``), the steps vanish (``shift`` beyond
    the error's width), labels include none (``>= K``). With ``port`` the
    weights live in :class:`WeightPortModel` (no cycle reads and writes it).
    """
    mismatches, seen = learning_mismatches(spec, classes, memory, seed=classes * 100 + spec.readout_bits)
    assert not mismatches, "\n".join(mismatches[:10])
    assert seen["w"] == set(signed_range(spec.weight_store_bits)), f"weight saturations reached: {seen['w']}"
    assert seen["b"], "no bias update saturated"
    assert seen["e"], "no step error clamped"
    assert classes == 1 or seen["L"], "no learning signal saturated"   # K = 1: |L| <= 127 always


def _truncating_register(m, value, bits, en, name):
    """A broken :func:`~delrec.hw.readout_learning.saturated_register`: the low bits, registered."""
    out = Signal(signed(bits), name=name)
    with m.If(en):
        m.d.sync += out.eq(Value.cast(value)[:bits])
    return out


MUTATIONS = {
    "rounding-floors": ("readout_learning", "round_bit_complement", lambda value: Const(1, 1)),
    "saturate-truncates": ("readout_learning", "saturate",
                           lambda value, bits: Value.cast(value)[:bits].as_signed()),
    "saturated_register-truncates": ("readout_learning", "saturated_register", _truncating_register),
    "feedback_weight-shift-off-by-one": ("readout_learning", "feedback_weight", lambda value, spec: fixed.forward_value(
        value, spec.weight_frac_bits - spec.feedback_frac_bits + 1)),
    "step_error-unclamped": ("readout_learning", "clamp", lambda value, lo, hi: value),
    "forward_value-stored-copy": ("readout", "forward_value", lambda value, frac_bits: value),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_readout_learning_check_catches_mutations(mutation, monkeypatch):
    """The learning check fails on deliberately broken arithmetic: it cannot miss such a bug."""
    module, name, broken = MUTATIONS[mutation]
    monkeypatch.setattr({"readout": readout_module, "readout_learning": readout_learning}[module], name, broken)
    mismatches, _ = learning_mismatches(LEARNING_SPECS[1], 3, "whole", seed=7)
    assert mismatches, f"the learning check passed with {mutation}"


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("neurons", [1, 3])
@pytest.mark.parametrize("memory", ["whole", "port"])
def test_readout_learning_command_cycles(neurons, classes, memory):
    """errors K (W + 1) + 2 (ready low throughout, W = readout_bits + 1), broadcast N (K + 1) + 3 (ready low
    N (K + 1); L_i at (i + 1) (K + 1) + 3), learn and learn_bias 2 K + 4 (ready low throughout; back-to-back
    learns 2 K + 5 apart).

    With ``weight_port``: the broadcast reads ``w_out[k, i]`` in its cycle
    ``i (K + 1) + k + 1``, a learn of ``j`` reads ``w_out[k, j]`` in its cycle
    ``2 k + 1`` and writes it in its cycle ``2 k + 6``, ``errors`` and
    ``learn_bias`` do not use the port, no cycle reads and writes.
    """
    N, K = neurons, classes
    spec = CoreSpec(weight_frac_bits=8)
    W = spec.readout_bits + 1
    dut, model = make_readout(N, K, spec, memory, True)
    counts, pulse_cycles, accepted, strobes = {}, [], [], {}
    cycle = [0]

    async def tick(ctx):
        await ctx.tick()
        cycle[0] += 1

    async def strobe(ctx, name, **fields):
        for field, value in fields.items():
            ctx.set(getattr(dut, field), value)
        assert ctx.get(dut.ready), f"ready low before {name}"
        strobes.setdefault(name, cycle[0] + 1)
        ctx.set(getattr(dut, name), 1)
        await tick(ctx)
        ctx.set(getattr(dut, name), 0)

    async def testbench(ctx):
        for name, fields in (("errors", {"label": 0}), ("broadcast", {}), ("learn", {"neuron": N - 1}),
                             ("learn_bias", {})):
            await strobe(ctx, name, **fields)
            busy = not_ready = 0
            while ctx.get(dut.busy):
                busy += 1
                not_ready += not ctx.get(dut.ready)
                if ctx.get(dut.signal_valid):
                    pulse_cycles.append(busy)
                await tick(ctx)
            counts[name] = (busy, not_ready)
        if N > 1:   # two learns back to back: the second strobe as soon as ready rises
            await strobe(ctx, "learn", neuron=0)
            c = 1
            while not ctx.get(dut.ready):
                await tick(ctx)
                c += 1
            accepted.append(c)
            await strobe(ctx, "learn", neuron=1)
            while ctx.get(dut.busy):
                await tick(ctx)

    run_readout(dut, testbench, model=model)
    want = {"errors": (K * (W + 1) + 2,) * 2, "broadcast": (N * (K + 1) + 3, N * (K + 1)),
            "learn": (2 * K + 4,) * 2, "learn_bias": (2 * K + 4,) * 2}
    for name in want:
        assert counts[name] == want[name], \
            f"{name} (N={N}, K={K}): (busy, not ready) cycles hw {counts[name]}, docstring {want[name]}"
    assert pulse_cycles == [(i + 1) * (K + 1) + 3 for i in range(N)], f"signal_valid cycles: {pulse_cycles}"
    assert accepted == ([2 * K + 5] if N > 1 else []), f"second learn accepted after {accepted} cycles"
    if model is None:
        return

    def port_use(name, length):   # the accesses in the command's cycles, numbered from 1
        s = strobes[name]
        return [(c - s, kind, addr) for c, kind, addr in model.accesses if s < c <= s + length]

    assert port_use("errors", want["errors"][0]) == [], "errors used the weight port"
    assert port_use("broadcast", want["broadcast"][0]) == \
        [(i * (K + 1) + k + 1, "R", i * K + k) for i in range(N) for k in range(K)], "broadcast's weight reads"
    learn = sorted([(2 * k + 1, "R", (N - 1) * K + k) for k in range(K)]
                   + [(2 * k + 6, "W", (N - 1) * K + k) for k in range(K)])
    assert port_use("learn", want["learn"][0]) == learn, f"learn's weight reads and writes: {port_use('learn', 99)}"
    assert port_use("learn_bias", want["learn_bias"][0]) == [], "learn_bias used the weight port"


@pytest.mark.parametrize("shape, bits", [(signed(26), 16), (signed(33), 32), (signed(9), 8), (unsigned(10), 8),
                                         (signed(6), 8)])
def test_readout_saturations_match_arith(shape, bits):
    """The learning datapath's :func:`~delrec.hw.readout_learning.saturate` (by the dropped bits),
    :func:`~delrec.hw.readout_learning.saturated_register` (one cycle later) and ``clamp`` to
    ``+-(2^(b-1) - 1)`` and to narrower bounds, against ``sat`` and ``clamp``."""
    value = Signal(shape)
    values = corners(shape.width, shape.signed) + values_of(shape.width, shape.signed, np.random.default_rng(3), 200)
    top = (1 << (bits - 1)) - 1
    exprs = [readout_learning.saturate(value, bits), readout_learning.clamp(value, -top, top),
             readout_learning.clamp(value, -5, 100)]
    got = evaluate([value], exprs, [(v,) for v in values])
    want = [(sat(v, bits), clamp(v, -top, top), clamp(v, -5, 100)) for v in values]
    check_all("saturate / clamp", ("saturate", "clamp to +-top", "clamp to -5..100"), values, got, want)
    if not shape.signed or shape.width <= bits:
        return
    m = Module()
    en = Signal()
    out = Signal(signed(bits))
    m.d.comb += out.eq(readout_learning.saturated_register(m, value, bits, en, "r"))
    registered = []

    async def testbench(ctx):
        for n, v in enumerate(values):
            ctx.set(value, v)
            ctx.set(en, n % 3 != 2)        # en low: the register holds the previous result
            await ctx.tick()
            registered.append(ctx.get(out))

    run_sim(m, testbench)
    held = None
    for n, (v, g) in enumerate(zip(values, registered)):
        held = sat(v, bits) if n % 3 != 2 else held
        assert g == held, f"saturated_register({v}, {bits}) after en={n % 3 != 2}: hw {g}, sat {held}"


# ---------------------------------------------------------------------------
# ring.py / history.py: the delay queues
# ---------------------------------------------------------------------------

class QueueBench:
    """Drives a delay queue (the :func:`delay_queue_signature` side the core drives)."""

    def __init__(self, dut, rows: int, lanes: int, rng: np.random.Generator, gap: float = 0.4):
        self.dut, self.rows, self.lanes, self.rng, self.gap = dut, rows, lanes, rng, gap
        self.latency = PROBE_LATENCY["history" if isinstance(dut, SpikeHistory) else "ring"]

    async def idle(self, ctx):
        while self.rng.random() < self.gap:
            await ctx.tick()

    async def deliver(self, ctx, row: int, offsets: list[int], weights: list[int]):
        ctx.set(self.dut.deliver_en, 1)
        ctx.set(self.dut.deliver_row, row)
        ctx.set(self.dut.deliver_offset, offsets)
        ctx.set(self.dut.deliver_weight, weights)
        await ctx.tick()
        ctx.set(self.dut.deliver_en, 0)

    async def take(self, ctx, row: int) -> list[int]:
        """Take one row; the next command may follow on the very next cycle."""
        ctx.set(self.dut.take_en, 1)
        ctx.set(self.dut.take_row, row)
        await ctx.tick()
        ctx.set(self.dut.take_en, 0)
        return [ctx.get(self.dut.take_current[lane]) for lane in range(self.lanes)]

    async def record(self, ctx, row: int, spikes: list[int]):
        """Announce the row, then give its spikes ``RECORD_LATENCY`` cycles later (as the core does)."""
        ctx.set(self.dut.record_en, 1)
        ctx.set(self.dut.record_row, row)
        await ctx.tick()
        ctx.set(self.dut.record_en, 0)
        ctx.set(self.dut.record_row, 0 if row else self.rows - 1)   # the row moves on
        await ctx.tick().repeat(RECORD_LATENCY - 1)
        ctx.set(self.dut.record_spikes, sum(bit << lane for lane, bit in enumerate(spikes)))
        await ctx.tick()
        ctx.set(self.dut.record_spikes, 0)

    async def probe(self, ctx, row: int, ages: list[int]) -> list[int]:
        """Probe one row: ``ages`` on the next cycle, the bits ``PROBE_LATENCY`` cycles after the probe."""
        ctx.set(self.dut.probe_en, 1)
        ctx.set(self.dut.probe_row, row)
        await ctx.tick()
        ctx.set(self.dut.probe_en, 0)
        ctx.set(self.dut.probe_age, ages)
        await ctx.tick().repeat(self.latency - 1)
        bits = ctx.get(self.dut.probe_spikes)
        return [(bits >> lane) & 1 for lane in range(self.lanes)]

    async def clear(self, ctx) -> int:
        """Clear; return the cycles ``busy`` stays high after the strobe."""
        ctx.set(self.dut.clear, 1)
        await ctx.tick()
        ctx.set(self.dut.clear, 0)
        cycles = 0
        while ctx.get(self.dut.busy):
            cycles += 1
            await ctx.tick()
        return cycles


QUEUE_GEOMETRIES = [(4, 2, 2), (3, 1, 3), (2, 2, 1)]   # (N, P, delay_bits): D = 4, 8, 2


def queue_spec(delay_bits: int) -> CoreSpec:
    return CoreSpec(delay_bits=delay_bits)


def delivery_plan(rng, rows: int, lanes: int, depth: int, count: int, recurrent: bool):
    """``count`` deliveries ``(row, delays, weights)``; rows repeat back to back now and then.

    ``delays`` are ``d`` in ``0..D-1`` (recurrent: due ``1 + d`` steps later) or
    ``None`` (input: due this step). Recurrent plans start with ``d = D - 1``
    on the last row (the word the last take of the step has just emptied),
    then ``d = 0``.
    """
    plan = []
    row = rows - 1
    for n in range(count):
        if n and rng.random() >= 0.4:
            row = int(rng.integers(0, rows))
        if recurrent:
            delays = [int(d) for d in rng.integers(0, depth, lanes)]
            if n < 2:
                delays[0] = depth - 1 if n == 0 else 0
        else:
            delays = None
        weights = [int(w) for w in rng.integers(-128, 128, lanes)]
        plan.append((row, delays, weights))
    return plan


@pytest.mark.parametrize("neurons, lanes, delay_bits", QUEUE_GEOMETRIES)
def test_ring_returns_inputs_scheduled_for_the_step(neurons, lanes, delay_bits):
    """Input at offset 0 and recurrent weights at ``(1 + d) mod D`` come back at step ``t + 1 + d``."""
    spec = queue_spec(delay_bits)
    D, P, B = spec.depth, lanes, neurons // lanes
    T = 3 * D + 2
    rng = np.random.default_rng(neurons * 100 + delay_bits)
    dut = FutureInputRing(neurons, P, spec)
    bench = QueueBench(dut, B, P, rng)
    due: dict[tuple[int, int], int] = {}       # (step, neuron) -> sum of the weights scheduled for it
    mismatches = []

    def schedule(step, neuron, weight):
        due[step, neuron] = due.get((step, neuron), 0) + weight

    async def testbench(ctx):
        for t in range(T):
            ctx.set(dut.slot, t % D)
            # input events of the step: offset 0; the last one may be followed at once by the takes
            for row, _, weights in delivery_plan(rng, B, P, D, int(rng.integers(0, 4)), False):
                await bench.idle(ctx)
                await bench.deliver(ctx, row, [0] * P, weights)
                for lane in range(P):
                    schedule(t, row * P + lane, weights[lane])
            # the neuron update: every row taken once, back to back
            for row in range(B):
                got = await bench.take(ctx, row)
                for lane in range(P):
                    want = due.pop((t, row * P + lane), 0)
                    if got[lane] != want:
                        mismatches.append(f"step {t} (slot {t % D}): neuron {row * P + lane} took "
                                          f"{got[lane]}, scheduled {want}")
            # consumed words are empty: a second take of a row returns zeros
            if t % 3 == 0:
                row = int(rng.integers(0, B))
                got = await bench.take(ctx, row)
                if got != [0] * P:
                    mismatches.append(f"step {t}: second take of row {row} gave {got}, not zeros")
            # the fan-out of the step's spikes, straight after the last take
            for row, delays, weights in delivery_plan(rng, B, P, D, int(rng.integers(2, 6)), True):
                await bench.deliver(ctx, row, [(1 + d) % D for d in delays], weights)
                for lane in range(P):
                    schedule(t + 1 + delays[lane], row * P + lane, weights[lane])
                await bench.idle(ctx)

    run_sim(dut, testbench)
    assert not mismatches, "\n".join(mismatches[:10])


@pytest.mark.parametrize("neurons, lanes, delay_bits", QUEUE_GEOMETRIES)
def test_ring_clear_empties_every_slot(neurons, lanes, delay_bits):
    """``clear`` keeps ``busy`` ``B * D`` cycles and leaves every slot of every row at zero."""
    spec = queue_spec(delay_bits)
    D, P, B = spec.depth, lanes, neurons // lanes
    rng = np.random.default_rng(7 + neurons)
    dut = FutureInputRing(neurons, P, spec)
    bench = QueueBench(dut, B, P, rng, gap=0.0)
    found = {}

    async def testbench(ctx):
        for slot in range(D):              # something in every word
            ctx.set(dut.slot, slot)
            for row in range(B):
                await bench.deliver(ctx, row, [0] * P, [int(w) or 1 for w in rng.integers(-128, 128, P)])
        await ctx.tick()
        found["busy"] = await bench.clear(ctx)
        for slot in range(D):
            ctx.set(dut.slot, slot)
            for row in range(B):
                got = await bench.take(ctx, row)
                if got != [0] * P:
                    found.setdefault("left", []).append(f"slot {slot} row {row}: {got}")

    run_sim(dut, testbench)
    assert found["busy"] == B * D, f"clear busy cycles: hw {found['busy']}, docstring B*D = {B * D}"
    assert "left" not in found, f"words not cleared: {found['left']}"


@pytest.mark.parametrize("neurons, lanes, delay_bits", [(4, 2, 2), (3, 1, 3)])
def test_ring_probe_returns_recorded_spikes(neurons, lanes, delay_bits):
    """The ring keeps the step's spikes (age 0, whatever ``probe_age``); a new record replaces them."""
    spec = queue_spec(delay_bits)
    D, P, B = spec.depth, lanes, neurons // lanes
    rng = np.random.default_rng(3 + neurons)
    dut = FutureInputRing(neurons, P, spec)
    bench = QueueBench(dut, B, P, rng)
    recorded = [[0] * P for _ in range(B)]
    mismatches = []

    async def testbench(ctx):
        for t in range(6):
            ctx.set(dut.slot, t % D)
            for row in range(B):
                recorded[row] = [int(b) for b in rng.integers(0, 2, P)]
                await bench.record(ctx, row, recorded[row])
            for row in rng.permutation(B):
                row = int(row)
                held = recorded[row]
                got = await bench.probe(ctx, row, [int(a) for a in rng.integers(0, D, P)])
                if got != held:
                    mismatches.append(f"step {t}: row {row} probed {got}, recorded {held}")
                # a new record of that row shows at the next probe
                recorded[row] = [1 - b for b in held]
                await bench.record(ctx, row, recorded[row])
                await bench.idle(ctx)
                got = await bench.probe(ctx, row, [0] * P)
                if got != recorded[row]:
                    mismatches.append(f"step {t}: row {row} probed {got} after a new record, "
                                      f"recorded {recorded[row]}")

    run_sim(dut, testbench)
    assert not mismatches, "\n".join(mismatches[:10])


@pytest.mark.parametrize("neurons, lanes, delay_bits", QUEUE_GEOMETRIES)
def test_history_spike_arrives_one_plus_delay_steps_later(neurons, lanes, delay_bits):
    """Before the update of step ``t``, age ``(1 + d) mod D`` shows the spike written at ``t - 1 - d``.

    Every lane probes a different age at once; after the record of step ``t``
    age 0 shows the new spike (the bit of step ``t - D`` is overwritten).
    """
    spec = queue_spec(delay_bits)
    D, P, B = spec.depth, lanes, neurons // lanes
    T = 3 * D + 2
    rng = np.random.default_rng(11 + neurons * 10 + delay_bits)
    dut = SpikeHistory(neurons, P, spec)
    bench = QueueBench(dut, B, P, rng)
    spikes = np.zeros((T, neurons), int)
    mismatches = []

    def written(step, neuron):
        return int(spikes[step, neuron]) if step >= 0 else 0

    async def testbench(ctx):
        for t in range(T):
            ctx.set(dut.slot, t % D)
            for row in range(B):
                await bench.idle(ctx)
                for shift in range(D):            # every delay on every lane
                    delays = [(shift + lane) % D for lane in range(P)]
                    got = await bench.probe(ctx, row, [(1 + d) % D for d in delays])
                    want = [written(t - 1 - d, row * P + lane) for lane, d in enumerate(delays)]
                    if got != want:
                        mismatches.append(f"step {t}: row {row} delays {delays} probed {got}, "
                                          f"spikes written at t-1-d {want}")
                    await bench.idle(ctx)
            for row in range(B):
                spikes[t, row * P:(row + 1) * P] = rng.integers(0, 2, P)
                await bench.take(ctx, row)
                await bench.record(ctx, row, [int(b) for b in spikes[t, row * P:(row + 1) * P]])
            row = int(rng.integers(0, B))
            got = await bench.probe(ctx, row, [0] * P)
            want = [written(t, row * P + lane) for lane in range(P)]
            if got != want:
                mismatches.append(f"step {t}: row {row} age 0 after the record probed {got}, "
                                  f"written now {want}")

    run_sim(dut, testbench)
    assert not mismatches, "\n".join(mismatches[:10])


@pytest.mark.parametrize("neurons, lanes, delay_bits", QUEUE_GEOMETRIES)
def test_history_currents_sum_deliveries_of_the_step(neurons, lanes, delay_bits):
    """Deliveries add into the current step whatever their offset; ``take`` returns the sum and zeroes it."""
    spec = queue_spec(delay_bits)
    D, P, B = spec.depth, lanes, neurons // lanes
    rng = np.random.default_rng(5 + neurons * 10 + delay_bits)
    dut = SpikeHistory(neurons, P, spec)
    bench = QueueBench(dut, B, P, rng)
    mismatches = []

    async def testbench(ctx):
        for t in range(2 * D + 2):
            ctx.set(dut.slot, t % D)
            current = [0] * neurons
            for row, delays, weights in delivery_plan(rng, B, P, D, int(rng.integers(0, 8)), True):
                await bench.deliver(ctx, row, [(1 + d) % D for d in delays], weights)
                for lane in range(P):
                    current[row * P + lane] += weights[lane]
                await bench.idle(ctx)
            for row in range(B):
                got = await bench.take(ctx, row)
                want = current[row * P:(row + 1) * P]
                if got != want:
                    mismatches.append(f"step {t}: row {row} took {got}, delivered {want}")
            row = int(rng.integers(0, B))
            got = await bench.take(ctx, row)
            if got != [0] * P:
                mismatches.append(f"step {t}: second take of row {row} gave {got}, not zeros")

    run_sim(dut, testbench)
    assert not mismatches, "\n".join(mismatches[:10])


@pytest.mark.parametrize("neurons, lanes, delay_bits", QUEUE_GEOMETRIES)
def test_history_clear_forgets_spikes_and_currents(neurons, lanes, delay_bits):
    """``clear`` keeps ``busy`` ``B`` cycles, then no age of any row shows a spike and currents are zero."""
    spec = queue_spec(delay_bits)
    D, P, B = spec.depth, lanes, neurons // lanes
    rng = np.random.default_rng(9 + neurons)
    dut = SpikeHistory(neurons, P, spec)
    bench = QueueBench(dut, B, P, rng, gap=0.0)
    found = {"left": []}

    async def testbench(ctx):
        for slot in range(D):
            ctx.set(dut.slot, slot)
            for row in range(B):
                await bench.take(ctx, row)
                await bench.record(ctx, row, [1] * P)
        for row in range(B):
            await bench.deliver(ctx, row, [0] * P, [int(w) or 1 for w in rng.integers(-128, 128, P)])
        await ctx.tick()
        found["busy"] = await bench.clear(ctx)
        for row in range(B):
            for age in range(D):
                got = await bench.probe(ctx, row, [age] * P)
                if got != [0] * P:
                    found["left"].append(f"row {row} age {age}: spikes {got}")
            got = await bench.take(ctx, row)
            if got != [0] * P:
                found["left"].append(f"row {row}: current {got}")

    run_sim(dut, testbench)
    words = D << max(1, (B - 1).bit_length())   # every word of the spike memory
    assert found["busy"] == words, f"clear busy cycles: hw {found['busy']}, docstring H 2^r = {words}"
    assert not found["left"], f"not cleared: {found['left']}"


# ---------------------------------------------------------------------------
# fixed.py: the learning rule's shifts and clamps
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [signed(9), signed(20), unsigned(7)], ids=str)
def test_rshift_round_matches_arith_for_constant_and_runtime_shifts(shape):
    """Round half up, ``k = 0`` exact; a run-time shift up to 63 (beyond the value's width)."""
    rng = np.random.default_rng(shape.width)
    x = Signal(shape)
    k = Signal(6)
    values = values_of(shape.width, shape.signed, rng, 150)
    shifts = sorted({0, 1, 2, 3, shape.width - 1, shape.width, shape.width + 1, 63})
    vectors = [(v, s) for v in values for s in shifts]
    got = evaluate([x, k], [fixed.rshift_round(x, k)], vectors)
    want = [(rshift_round(v, s),) for v, s in vectors]
    check_all(f"rshift_round(x: {shape}, k)", ("result",), [{"x": v, "k": s} for v, s in vectors], got, want)
    for constant in (0, 1, 5):
        got = evaluate([x], [fixed.rshift_round(x, constant)], [(v,) for v in values])
        want = [(rshift_round(v, constant),) for v in values]
        check_all(f"rshift_round(x: {shape}, {constant})", ("result",), [{"x": v} for v in values], got, want)
    # the vectors hold ties (odd values shifted by one) on both sides of zero where signed
    assert any(v % 2 and v > 0 for v in values)
    assert not shape.signed or any(v % 2 and v < 0 for v in values)


def test_rshift_round_refuses_a_negative_shift():
    with pytest.raises(ValueError, match="Shift must be non-negative, not -1"):
        fixed.rshift_round(Signal(signed(8)), -1)


def test_clamp_and_forward_value_match_arith():
    x = Signal(signed(12))
    values = list(range(-2048, 2048, 7)) + [-2048, 2047, -5, 5]
    got = evaluate([x], [fixed.clamp(x, -100, 300), fixed.forward_value(x, 4), fixed.forward_value(x, 0)],
                   [(v,) for v in values])
    want = [(clamp(v, -100, 300), forward_value(v, 4), v) for v in values]
    check_all("clamp / forward_value", ("clamp", "forward4", "forward0"), [{"x": v} for v in values],
              got, want)
