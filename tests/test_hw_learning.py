"""Unit tests of the delay-learning unit's gateware (amaranth.sim) against :mod:`delrec.arith`.

* :class:`~delrec.hw.traces.TraceUnit`: passes over the channels driven
  like the core drives them, with a small Python model of the core's side
  answering the delay and sample requests at their latencies from model
  memories (random delays with fractions, event counts and spikes per step);
  after every pass each trace is read back and compared with a model written
  only with ``tap_range``, ``delay_derivative`` and ``trace_update``; the
  requests themselves, ``clear`` and the documented cycle counts are checked,
  with the default sample latency (2) and with 1, 3 and 4.
* :class:`~delrec.hw.delay_update.DelayUpdate`: columns of random and
  extreme rows, compared cycle by cycle with the exact sum and with
  ``delay_update(delay, parameter_step(S * trace, shift), spec)`` at the
  documented, shift-dependent finish latency (the clear and the next
  column's rows overlapping the serial finish, stray ``finish_en`` ignored).
* Injected mutations (broken rounding, saturation, leak, tap window, the
  serial multiply's sign, the step's saturation, ...) must make the same
  checks fail.
* Both units convert to Verilog at the SHD size.

Each failure names the case and both values.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Const, Mux
from amaranth.sim import Simulator

from delrec.arith import (CoreSpec, decay, delay_derivative, delay_update, gaussian_derivative_lut,
                          parameter_step, signed_range, tap_range, trace_update)
from delrec.build import CoreBuild
from delrec.hw import delay_update as delay_update_module
from delrec.hw.delay_update import DelayUpdate
from delrec.hw.traces import TraceUnit


pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def learning_build(spec: CoreSpec, lanes: int = 1, inputs: int = 3, neurons: int = 4,
                   reach_steps: int = 3) -> CoreBuild:
    return CoreBuild(inputs, neurons, 2, spec, lanes=lanes, queue="history", input_delays="axonal",
                     learning="step", max_reach=reach_steps << spec.delay_frac_bits)


SHD_BUILD = CoreBuild(140, 256, 20, CoreSpec(delay_frac_bits=6, weight_frac_bits=8), lanes=1,
                      queue="history", input_delays="axonal", learning="step", max_reach=768)


# ---------------------------------------------------------------------------
# TraceUnit
# ---------------------------------------------------------------------------

class CoreSide:
    """The core's side of a pass: delays, the event history, and the traces expected from arith.

    ``history[s][p]`` is channel ``p``'s value at step ``s`` (an input's
    count, a neuron's spike bit); ``sample(p, age)`` answers a request at
    step ``t`` and records a violation when the age is outside ``0..t`` or
    the history ring (``history_depth - 1`` steps).
    """

    def __init__(self, build: CoreBuild, rng: np.random.Generator):
        self.build, self.spec, self.rng = build, build.spec, rng
        self.channels = build.channels
        self.delays = [0] * self.channels
        self.traces = [0] * self.channels
        self.history: list[list[int]] = []
        self.t = 0
        self.violations: list[str] = []
        self.delay_requests: list[int] = []
        self.sample_requests: list[tuple[int, int]] = []
        self.saturated: set[str] = set()

    def restart(self):
        """A clear of the traces (the history goes on)."""
        self.traces = [0] * self.channels

    def new_delays(self, spread: bool = True):
        top = self.spec.delay_max
        ds = [int(d) for d in self.rng.integers(0, top + 1, self.channels)]
        if spread:   # the extremes, and integer delays
            ds[0], ds[-1] = 0, top
            ds[1] = int(self.rng.integers(0, self.spec.depth)) << self.spec.delay_frac_bits
        self.delays = ds

    def new_step(self, t: int, dense: bool = False):
        """Events of step ``t`` (the steps before are kept)."""
        while len(self.history) <= t:
            C = self.build.inputs
            top = (1 << self.spec.count_bits) - 1
            if dense:
                counts = [top if self.rng.random() < 0.8 else int(self.rng.integers(0, top + 1)) for _ in range(C)]
                spikes = [int(self.rng.random() < 0.8) for _ in range(self.build.neurons)]
            else:
                counts = [int(c) * int(self.rng.random() < 0.6) for c in self.rng.integers(0, top + 1, C)]
                spikes = [int(s) for s in self.rng.integers(0, 2, self.build.neurons)]
            self.history.append(counts + spikes)
        self.t = t

    def delay(self, channel: int) -> int:
        self.delay_requests.append(channel)
        return self.delays[channel]

    def sample(self, channel: int, age: int) -> int:
        self.sample_requests.append((channel, age))
        if not 0 <= age <= self.t or age >= self.build.history_depth - 1:
            self.violations.append(f"step {self.t}: channel {channel} asked for age {age}")
            return int(self.rng.integers(0, 1 << self.spec.count_bits))
        return self.history[self.t - age][channel]

    def expect_pass(self, lut: list[int], reach: int, leak: int, groups: list[int]):
        """The traces after a pass (arith only), the taps per channel and the requests it asks."""
        f, t, C = self.spec.delay_frac_bits, self.t, self.build.inputs
        taps, samples = [], []
        for p in groups:
            d, offset = self.delays[p], int(p >= C)
            lo, hi = tap_range(d, reach, f, t, offset)
            taps.append(max(0, hi - lo + 1))
            samples += [(p, m + offset) for m in range(lo, hi + 1)]

            def sample(m, p=p, offset=offset):   # taps before step 0 hold no events
                return self.history[t - m - offset][p] if m + offset <= t else 0

            derivative = delay_derivative(d, lut, f, sample)
            raw = decay(self.traces[p], leak, self.spec.leak, self.spec.decay_bits) + derivative
            lo_t, hi_t = signed_range(self.spec.trace_bits)
            if raw > hi_t:
                self.saturated.add("high")
            if raw < lo_t:
                self.saturated.add("low")
            self.traces[p] = trace_update(self.traces[p], derivative, leak, self.spec)
        return taps, samples


def leak_choices(spec: CoreSpec) -> list[int]:
    lo, hi = spec.leak_param_range()
    if spec.leak == "multiply":
        return [lo, 1, hi // 2, hi - 26, hi - 1, hi]
    return [lo, 1, 2, 3, 5, hi]


def trace_plan(build: CoreBuild, rng: np.random.Generator, short: bool = False) -> list[tuple]:
    """The actions of a check: tables, passes (step, leak, groups, dense events), clears."""
    spec = build.spec
    f, R = spec.delay_frac_bits, build.max_reach
    lo, hi = signed_range(spec.lut_bits)
    sigmas = [1.0, 0.4, 0.05] if f else [1.0, 0.5, 0.2]
    leaks = leak_choices(spec)
    both, inputs, recurrent = (1, 1), (1, 0), (0, 1)
    plan = []

    def table(sigma):
        lut = gaussian_derivative_lut(sigma, 3.0, f, spec.lut_bits)
        assert (len(lut) - 1) // 2 <= R
        return ("lut", lut)

    def full_range(a, b):
        lut = [int(v) for v in rng.integers(a, b + 1, 2 * R + 1)]
        lut[R // 2], lut[-1 - R // 2] = a, b
        return ("lut", lut)

    def passes(steps, groups=(both,), dense=False, leak=None):
        for n, t in enumerate(steps):
            plan.append(("pass", t, leaks[int(rng.integers(0, len(leaks)))] if leak is None else leak,
                         groups[n % len(groups)], dense, n % 2 == 0))

    plan.append(table(sigmas[0]))
    passes(range(0, 6) if short else range(0, 8))
    if not short:
        plan.append(table(sigmas[1]))
        passes(range(8, 14), groups=(both, inputs, recurrent))
        plan.append(table(sigmas[2]))
        passes(range(14, 18), groups=(both, recurrent))
        plan.append(table(sigmas[0]))
        passes([33, 34, build.history_depth + 8], groups=(inputs, both))   # beyond the history depth
    plan.append(("clear",))
    no_leak = spec.leak_param_range()[1]
    plan.append(full_range(hi // 2, hi))   # towards the top, then the bottom: saturation both ways
    base = build.history_depth + 12        # the clear keeps the history; later steps, all taps
    passes(range(base, base + 9), dense=True, leak=no_leak)
    plan.append(full_range(lo, lo // 2))
    passes(range(base + 9, base + 20), dense=True, leak=no_leak)
    plan.append(full_range(lo, hi))
    passes(range(base + 20, base + (23 if short else 28)), groups=(both, recurrent, inputs), dense=True)
    return plan


def expected_pass_cycles(taps: list[int], sample_latency: int) -> int:
    """The documented busy cycles of a pass, from the taps of its channels in pass order.

    ``5 + L`` (the first delay's request and header, the last write), each
    channel but the last ``max(4, 2 + taps)`` (its decay, taps and closing
    slots; 4 at least: the next channel's delay request and header), the
    last ``2 + taps``.
    """
    return 5 + sample_latency + sum(max(4, 2 + n) for n in taps[:-1]) + 2 + taps[-1]


def check_trace_unit(unit_class, build: CoreBuild, seed: int, short: bool = False,
                     sample_latency: int = 2) -> dict:
    """Run :func:`trace_plan` on ``unit_class(build)``; assert every trace, request and cycle count."""
    rng = np.random.default_rng(seed)
    dut = unit_class(build, sample_latency=sample_latency)
    core = CoreSide(build, rng)
    plan = trace_plan(build, rng, short)
    C, channels = build.inputs, build.channels
    mismatches: list[str] = []
    found = {"passes": 0, "cycles": []}
    width = build.spec.stored_delay_bits

    assert dut.SAMPLE_LATENCY == sample_latency and dut.DELAY_LATENCY == 2

    async def core_side(ctx):
        """Answers each request exactly its latency after it (junk on other cycles)."""
        delays_asked, samples_asked = [None, None], [None] * 4
        async for _, _, d_en, d_ch, s_en, s_ch, s_age in ctx.tick().sample(
                dut.delay_en, dut.delay_channel, dut.sample_en, dut.sample_channel, dut.sample_age):
            delays_asked.append(d_ch if d_en else None)
            samples_asked.append((s_ch, s_age) if s_en else None)
            delay_asked, sample_asked = delays_asked[-2], samples_asked[-sample_latency]
            ctx.set(dut.delay_data, core.delay(delay_asked) if delay_asked is not None
                    else int(rng.integers(0, 1 << width)))
            ctx.set(dut.sample_data, core.sample(*sample_asked) if sample_asked is not None
                    else int(rng.integers(0, 1 << build.spec.count_bits)))

    async def busy_cycles(ctx, strobe) -> int:
        ctx.set(strobe, 1)
        await ctx.tick()
        ctx.set(strobe, 0)
        count = 0
        while ctx.get(dut.busy):
            count += 1
            await ctx.tick()
            if count > 10_000:
                raise AssertionError("busy never fell")
        return count

    async def read_traces(ctx) -> list[int]:
        values = []
        ctx.set(dut.read_en, 1)
        for p in range(channels):
            ctx.set(dut.read_addr, p)
            await ctx.tick()
            values.append(ctx.get(dut.read_data))
        ctx.set(dut.read_en, 0)
        return values

    async def driver(ctx):
        lut, reach = None, 0
        for action in plan:
            if action[0] == "lut":
                lut = action[1]
                reach = (len(lut) - 1) // 2
                ctx.set(dut.lut_write_en, 1)
                for addr, value in enumerate(lut):
                    ctx.set(dut.lut_write_addr, addr)
                    ctx.set(dut.lut_write_data, value)
                    await ctx.tick()
                ctx.set(dut.lut_write_en, 0)
                ctx.set(dut.reach, reach)
                continue
            if action[0] == "clear":
                cycles = await busy_cycles(ctx, dut.clear)
                if cycles != channels:
                    mismatches.append(f"clear: busy {cycles} cycles, documented {channels}")
                core.restart()
                got = await read_traces(ctx)
                if got != [0] * channels:
                    mismatches.append(f"traces after clear: hw {got}, expected zeros")
                continue
            _, t, leak, (inputs, recurrent), dense, moved = action
            if moved:
                core.new_delays()
            core.new_step(t, dense)
            ctx.set(dut.step, t)
            ctx.set(dut.leak, leak)
            ctx.set(dut.learn_inputs, inputs)
            ctx.set(dut.learn_recurrent, recurrent)
            groups = (list(range(C)) if inputs else []) + (list(range(C, channels)) if recurrent else [])
            core.delay_requests.clear()
            core.sample_requests.clear()
            before = list(core.traces)
            cycles = await busy_cycles(ctx, dut.start)
            taps, samples = core.expect_pass(lut, reach, leak, groups)
            case = (f"step {t}, reach {reach}, leak {leak}, groups {groups}, delays {core.delays}, "
                    f"traces before {before}")
            want_cycles = expected_pass_cycles(taps, sample_latency)
            found["cycles"].append(cycles)
            if cycles != want_cycles or cycles != dut.pass_cycles(taps):
                mismatches.append(f"{case}: busy {cycles} cycles, documented {want_cycles} (taps {taps})")
            if core.delay_requests != groups:
                mismatches.append(f"{case}: delays asked {core.delay_requests}, expected {groups}")
            if core.sample_requests != samples:
                mismatches.append(f"{case}: samples asked {core.sample_requests}, taps {samples}")
            got = await read_traces(ctx)
            for p in range(channels):
                if got[p] != core.traces[p]:
                    mismatches.append(f"{case}: trace {p} hw {got[p]}, arith {core.traces[p]}")
            found["passes"] += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(core_side)
    sim.add_testbench(driver)
    sim.run()
    problems = core.violations + mismatches
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:12])
    found["saturated"] = core.saturated
    return found


TRACE_SPECS = [
    (CoreSpec(leak="multiply", delay_frac_bits=6, delay_bits=4), 1),
    (CoreSpec(leak="shift", delay_frac_bits=6, delay_bits=4), 2),
    (CoreSpec(leak="multiply", delay_frac_bits=0, delay_bits=4), 2),
    (CoreSpec(leak="shift", delay_frac_bits=0, delay_bits=4), 1),
]


@pytest.mark.parametrize("spec, lanes", TRACE_SPECS,
                         ids=lambda v: f"{v.leak}-f{v.delay_frac_bits}" if isinstance(v, CoreSpec) else f"P{v}")
def test_trace_unit_matches_arith(spec, lanes):
    build = learning_build(spec, lanes)
    found = check_trace_unit(TraceUnit, build, seed=spec.delay_frac_bits * 10 + lanes)
    assert found["saturated"] == {"high", "low"}, f"the plan saturated only {found['saturated']}"
    assert found["passes"] >= 30


def test_trace_unit_clear_and_empty_pass():
    """``clear`` zeroes every trace in ``channels`` cycles; a pass without a group does nothing."""
    build = learning_build(CoreSpec(delay_frac_bits=6, delay_bits=4))
    dut = TraceUnit(build)
    found = {}

    async def driver(ctx):
        ctx.set(dut.start, 1)          # no group enabled: nothing happens
        await ctx.tick()
        ctx.set(dut.start, 0)
        found["idle"] = []
        for _ in range(4):
            found["idle"].append((ctx.get(dut.busy), ctx.get(dut.delay_en), ctx.get(dut.sample_en)))
            await ctx.tick()
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        count = 0
        while ctx.get(dut.busy):
            count += 1
            await ctx.tick()
        found["clear"] = count
        ctx.set(dut.read_en, 1)
        found["traces"] = []
        for p in range(build.channels):
            ctx.set(dut.read_addr, p)
            await ctx.tick()
            found["traces"].append(ctx.get(dut.read_data))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.run()
    assert found["idle"] == [(0, 0, 0)] * 4, f"(busy, delay_en, sample_en) after a start without groups: " \
        f"{found['idle']}"
    assert found["clear"] == build.channels == dut.CLEAR_CYCLES, \
        f"clear busy {found['clear']} cycles, documented {build.channels}"
    assert found["traces"] == [0] * build.channels, f"traces after clear: {found['traces']}"


def test_trace_unit_refuses_builds_that_do_not_learn():
    with pytest.raises(ValueError, match="learning build"):
        TraceUnit(CoreBuild(3, 4, 2))
    with pytest.raises(TypeError, match="CoreBuild"):
        TraceUnit(CoreSpec())


def test_trace_unit_sizes():
    unit = TraceUnit(SHD_BUILD)
    assert unit.max_taps == 2 * 768 // 64 + 1
    assert len(unit.step) == (2 * SHD_BUILD.history_depth).bit_length()
    assert len(unit.sample_age) == (SHD_BUILD.history_depth - 1).bit_length()
    assert unit.SAMPLE_LATENCY == 2 and unit.PASS_OVERHEAD == 7 and unit.CHANNEL_CYCLES == 4
    assert unit.pass_cycles([0, 3, 25]) == 7 + 4 + 5 + 27 == expected_pass_cycles([0, 3, 25], 2)
    assert unit.pass_cycles([25, 1, 0]) == 7 + 27 + 4 + 2
    assert unit.pass_cycles([]) == 0
    slow = TraceUnit(SHD_BUILD, sample_latency=3)
    assert slow.SAMPLE_LATENCY == 3 and slow.pass_cycles([0, 3, 25]) == 8 + 4 + 5 + 27
    assert TraceUnit.SAMPLE_LATENCY == 2    # the default


@pytest.mark.parametrize("latency", [0, 5, 2.0, True])
def test_trace_unit_refuses_sample_latencies(latency):
    with pytest.raises(ValueError, match="Sample latency must be an integer in 1..4"):
        TraceUnit(SHD_BUILD, sample_latency=latency)


@pytest.mark.parametrize("latency", [1, 3, 4])
def test_trace_unit_sample_latency(latency):
    """The core may answer samples later (a slower memory): the same traces, requests and documented cycles."""
    spec = CoreSpec(leak="multiply", delay_frac_bits=6, delay_bits=4)
    found = check_trace_unit(TraceUnit, learning_build(spec), seed=11 + latency, sample_latency=latency)
    assert found["saturated"] == {"high", "low"} and found["passes"] >= 30


def test_trace_unit_sample_latency_3_shift_leak():
    spec = CoreSpec(leak="shift", delay_frac_bits=6, delay_bits=4)
    found = check_trace_unit(TraceUnit, learning_build(spec, 2), seed=17, sample_latency=3)
    assert found["saturated"] == {"high", "low"} and found["passes"] >= 30


# -- mutations: the same check must fail ------------------------------------------------

class TracesSkipLeak(TraceUnit):
    """The decay term without the leak: ``eps 2^K``."""

    def _decay_operands(self, leak):
        return Const(1 << self.scale_bits), Const(0, 1)


class TracesTruncate(TraceUnit):
    """The new trace truncated to ``trace_bits`` instead of saturated."""

    def _saturate(self, value, bits):
        return value[:bits].as_signed()


class TracesDropLastTap(TraceUnit):
    """Off by one in the tap window: the last tap is lost."""

    def _tap_fits(self, index, age):
        f = self._build.spec.delay_frac_bits
        return (index + (1 << f) <= (self.reach << 1)) & (age < self.step)


class TracesPastCurrentStep(TraceUnit):
    """The window ignores ``m + offset <= t`` by one: asks for a step that has not happened."""

    def _tap_fits(self, index, age):
        return (index <= (self.reach << 1)) & (age <= self.step + 1)


TRACE_MUTATIONS = {
    "decay skips the leak": TracesSkipLeak,
    "saturate truncates": TracesTruncate,
    "window drops the last tap": TracesDropLastTap,
    "window reaches past the step": TracesPastCurrentStep,
}


@pytest.mark.parametrize("mutation", list(TRACE_MUTATIONS))
def test_trace_check_catches_mutation(mutation):
    build = learning_build(CoreSpec(leak="multiply", delay_frac_bits=6, delay_bits=4), 1)
    with pytest.raises(AssertionError, match="problems"):
        check_trace_unit(TRACE_MUTATIONS[mutation], build, seed=3, short=True)


def test_trace_check_passes_on_the_short_plan():
    """The plan the mutations run passes on the unit itself (so each failure above is the mutation's)."""
    build = learning_build(CoreSpec(leak="multiply", delay_frac_bits=6, delay_bits=4), 1)
    found = check_trace_unit(TraceUnit, build, seed=3, short=True)
    assert found["saturated"] == {"high", "low"}


# ---------------------------------------------------------------------------
# DelayUpdate
# ---------------------------------------------------------------------------

def delay_schedule(build: CoreBuild, dut: DelayUpdate, rng: np.random.Generator, columns: int):
    """Per-cycle inputs and the expected ``sum`` and results, from arith only.

    Returns ``(cycles, sums, results, cases)``: ``cycles[c]`` the inputs of
    cycle ``c``; ``sums[c]`` the exact ``S`` at a finish; ``results[c]`` the
    delay expected with ``result_valid`` on cycle ``c``; ``cases[c]`` its inputs.
    """
    s, P, B = build.spec, build.lanes, build.rows
    wlo, whi = signed_range(s.weight_bits)
    slo, shi = signed_range(s.signal_bits)
    ptop = 1 << s.psi_bits
    tlo, thi = signed_range(s.trace_bits)
    cycles, sums, results, cases = [], {}, {}, {}

    def idle():
        return {"row_en": 0, "row_weight": [int(v) for v in rng.integers(wlo, whi + 1, P)],
                "row_signal": [int(v) for v in rng.integers(slo, shi + 1, P)],
                "row_psi": [int(v) for v in rng.integers(0, 2 * ptop, P)],
                "finish_en": 0, "clear": 0, "trace": int(rng.integers(tlo, thi + 1)),
                "delay": int(rng.integers(0, 1 << s.stored_delay_bits)), "shift": int(rng.integers(0, 64))}

    def row(kind):
        if kind == "top":
            w, sig, psi = [wlo] * P, [slo] * P, [ptop] * P
        elif kind == "bottom":
            w, sig, psi = [whi] * P, [slo] * P, [ptop] * P
        else:
            w = [int(v) for v in rng.choice([wlo, whi, 0, *rng.integers(wlo, whi + 1, 4)], P)]
            sig = [int(v) for v in rng.choice([slo, shi, -1, *rng.integers(slo, shi + 1, 4)], P)]
            psi = [int(v) for v in rng.choice([0, ptop, 1, *rng.integers(0, ptop + 1, 4)], P)]
        return w, sig, psi

    def at(c):
        while len(cycles) <= c:
            cycles.append(idle())
        return cycles[c]

    at(0)["clear"] = 1
    pos, free = 1, 0                     # free: the cycle the previous finish's result comes out
    for column in range(columns):
        kind = ("top", "bottom")[column] if column < 2 else "random"
        rows = B if kind != "random" else int(rng.integers(1, B + 1))
        total, last = 0, None
        for _ in range(rows):
            while rng.random() < 0.2:
                pos += 1
            w, sig, psi = row(kind)
            total += sum(a * b * c for a, b, c in zip(w, sig, psi))
            at(pos).update(row_en=1, row_weight=w, row_signal=sig, row_psi=psi)
            last, pos = pos, pos + 1
        finish = max(last + dut.ROW_LATENCY + (int(rng.integers(1, 3)) if rng.random() < 0.2 else 0),
                     free + (int(rng.integers(1, 3)) if rng.random() < 0.2 else 0))
        trace = int(rng.choice([tlo, thi, int(rng.integers(tlo, thi + 1)), int(rng.integers(-50, 51))]))
        delay = int(rng.choice([0, s.delay_max, int(rng.integers(0, s.delay_max + 1))]))
        product = total * trace
        near = max(0, abs(product).bit_length() - s.stored_delay_bits + int(rng.integers(-3, 4)))
        shift = int(rng.choice([0, 1, 63, len(dut.sum) + s.trace_bits + 1, int(rng.integers(0, 64)),
                                min(63, near), min(63, near), min(63, near)]))
        at(finish).update(finish_en=1, trace=trace, delay=delay, shift=shift)
        sums[finish] = total
        done = finish + dut.finish_latency(shift)
        assert done == finish + dut.acc_bits + shift + 2
        results[done] = delay_update(delay, parameter_step(product, shift), s)
        cases[done] = dict(column=column, S=total, trace=trace, delay=delay, shift=shift,
                           unclamped=delay - parameter_step(product, shift))
        for c in range(finish + 1, done):  # finish_en while a finish runs is ignored
            if rng.random() < 0.05:
                at(c)["finish_en"] = 1
        # the clear and the next column's rows may come while the finish runs
        clear_at = finish + int(rng.integers(0, 2))
        at(clear_at)["clear"] = 1
        pos, free = clear_at + int(rng.integers(0, 2)), done   # rows may start with the clear
    at(max(results) + 2)
    return cycles, sums, results, cases


def check_delay_update(unit_class, build: CoreBuild, seed: int, columns: int = 40) -> dict:
    """Drive :func:`delay_schedule` through ``unit_class(build)``; assert every sum and result."""
    rng = np.random.default_rng(seed)
    dut = unit_class(build)
    cycles, sums, results, cases = delay_schedule(build, dut, rng, columns)
    seen: dict[int, tuple] = {}

    async def driver(ctx):
        for c, inputs in enumerate(cycles):
            for name, value in inputs.items():
                port = getattr(dut, name)
                if isinstance(value, list):
                    for lane, v in enumerate(value):
                        ctx.set(port[lane], v)
                else:
                    ctx.set(port, value)
            seen[c] = (ctx.get(dut.sum), ctx.get(dut.result_valid), ctx.get(dut.result_delay))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.run()
    problems = []
    for c, want in sums.items():
        if seen[c][0] != want:
            problems.append(f"cycle {c}: sum hw {seen[c][0]}, exact {want}")
    for c, (_, valid, got) in seen.items():
        if c in results:
            want = results[c]
            if not valid or got != want:
                problems.append(f"{cases[c]}: result_valid {valid}, result_delay hw {got}, "
                                f"arith {want}")
        elif valid:
            problems.append(f"cycle {c}: result_valid without a finish")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:12])
    return {"cases": list(cases.values()), "unit": dut}


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("spec", [CoreSpec(delay_frac_bits=6, delay_bits=4),
                                  CoreSpec(delay_frac_bits=0, delay_bits=6, signal_bits=6, psi_bits=3,
                                           weight_bits=12, trace_bits=20)],
                         ids=lambda s: f"f{s.delay_frac_bits}-t{s.trace_bits}")
def test_delay_update_matches_arith(spec, lanes):
    build = learning_build(spec, lanes)
    found = check_delay_update(DelayUpdate, build, seed=lanes * 7 + spec.delay_frac_bits, columns=60)
    dut = found["unit"]
    assert len(dut.sum) == spec.signal_bits + spec.psi_bits + 1 + spec.weight_bits + 2 + 1
    assert dut.ROW_LATENCY == 3 + (lanes - 1).bit_length()
    cases = found["cases"]
    assert any(c["unclamped"] < 0 for c in cases), "no result clamped at 0"
    assert any(c["unclamped"] > spec.delay_max for c in cases), "no result clamped at delay_max"
    assert any(0 < c["unclamped"] < spec.delay_max and c["unclamped"] != c["delay"] for c in cases), \
        "no result moved inside the range"
    assert {0, 63} <= {c["shift"] for c in cases}


def test_delay_update_shd_sizes():
    dut = DelayUpdate(SHD_BUILD)
    s = SHD_BUILD.spec
    assert len(dut.sum) == s.signal_bits + s.psi_bits + 1 + s.weight_bits + 8 + 1 == 33
    assert dut.acc_bits == dut.MULTIPLY_CYCLES == 31
    assert dut.ROW_LATENCY == 3
    assert [dut.finish_latency(k) for k in (0, 1, 26, 63)] == [33, 34, 59, 96]
    with pytest.raises(ValueError, match="0..63"):
        dut.finish_latency(64)
    assert DelayUpdate(learning_build(CoreSpec(delay_frac_bits=6), lanes=4)).ROW_LATENCY == 5


# -- mutations --------------------------------------------------------------------------

class FloorShift(DelayUpdate):
    """``parameter_step`` as a floor shift instead of rounding half up."""

    def _round(self, last_out):
        return Const(0, 1)


class UnsignedSum(DelayUpdate):
    """The serial multiply takes ``S``'s sign bit as a positive weight (``S`` read unsigned)."""

    def _subtracts(self, final):
        return Const(0, 1)


class NarrowStep(DelayUpdate):
    """The step saturated to ``stored_delay_bits`` (one bit too few: a step of ``2^(D-1)`` or more is cut)."""

    @property
    def step_bits(self) -> int:
        return super().step_bits - 1


class SignedPsi(DelayUpdate):
    """``psi`` read as a signed number (``2^psi_bits`` becomes negative)."""

    def _scaled_signal(self, signal, psi):
        return signal * psi.as_signed()


class NarrowSum(DelayUpdate):
    """``S`` three bits narrower than the brief's size (wraps on extreme columns)."""

    @property
    def sum_bits(self) -> int:
        return super().sum_bits - 3


DELAY_MUTATIONS = {
    "floor shift": FloorShift,
    "S read unsigned": UnsignedSum,
    "step saturated too narrow": NarrowStep,
    "signed psi": SignedPsi,
    "narrow sum": NarrowSum,
    "clamp without the floor": ("clamp", lambda value, lo, hi: Mux(value > hi, hi, value)),
}


@pytest.mark.parametrize("mutation", list(DELAY_MUTATIONS))
def test_delay_update_check_catches_mutation(mutation, monkeypatch):
    broken = DELAY_MUTATIONS[mutation]
    unit_class = DelayUpdate
    if isinstance(broken, tuple):
        monkeypatch.setattr(delay_update_module, *broken)
    else:
        unit_class = broken
    build = learning_build(CoreSpec(delay_frac_bits=6, delay_bits=4), 2)
    with pytest.raises(AssertionError, match="problems"):
        check_delay_update(unit_class, build, seed=5, columns=40)


def test_delay_update_check_passes_on_the_mutation_plan():
    build = learning_build(CoreSpec(delay_frac_bits=6, delay_bits=4), 2)
    check_delay_update(DelayUpdate, build, seed=5, columns=40)


# ---------------------------------------------------------------------------
# Verilog at the SHD size
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("unit_class", [TraceUnit, DelayUpdate], ids=lambda c: c.__name__)
def test_units_convert_to_verilog_at_shd_size(unit_class):
    start = time.perf_counter()
    text = verilog.convert(unit_class(SHD_BUILD), name=unit_class.__name__.lower())
    elapsed = time.perf_counter() - start
    assert "module" in text
    assert elapsed < 30, f"{unit_class.__name__}: Verilog took {elapsed:.1f} s"
