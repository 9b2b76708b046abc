"""cocotb testbench of the inference core: every spike, membrane and readout value, every step.

Runs inside the simulator process; it never imports torch or the golden
model. Its input is one ``.npz`` (path in ``$DELREC_TB_DATA``) written by
:mod:`delrec.sim.cosim` in the pytest process: the core's port layout and,
per sample, the writes before it (a network from the model compiler, a
learning rule, a label), the input events of each step, the golden spikes
and the golden values of every per-step check (a read target, e.g. every
membrane, readout value and score, or a learning core's traces, signals,
delays and readout weights after the step's update) and final check. Each
sample starts with a ``CLEAR`` unless it continues the previous one. Every
stream gets random idle cycles (``valid`` gaps) or backpressure (``ready``
low) with the probabilities in the file. The first difference fails the
test with its sample, step, quantity, index and both values; a summary
(cycles per step, events, scores) is written next to the data.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

try:
    from cocotb.simtime import get_sim_time
except ImportError:  # pragma: no cover - older cocotb
    from cocotb.utils import get_sim_time

CLOCK_NS = 10


def pack(fields: dict, **values) -> int:
    """Pack field values into a payload integer given ``{name: [offset, width]}``."""
    word = 0
    for name, value in values.items():
        offset, width = fields[name]
        word |= (int(value) & ((1 << width) - 1)) << offset
    return word


def unpack(fields: dict, word: int) -> dict:
    return {name: (word >> offset) & ((1 << width) - 1) for name, (offset, width) in fields.items()}


def to_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class _StreamEnd:
    """The ``valid``/``ready``/``payload`` signals of one stream port of the DUT."""

    def __init__(self, dut, name: str, clk, rng: random.Random):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk, self.rng = clk, rng


class StreamSource(_StreamEnd):
    """Drives a stream's ``valid``/``payload``; inserts idle cycles with probability ``idle``."""

    def __init__(self, dut, name: str, clk, rng: random.Random, idle: float):
        super().__init__(dut, name, clk, rng)
        self.idle = idle
        self.valid.value = 0

    async def send(self, word: int) -> None:
        while self.rng.random() < self.idle:
            await RisingEdge(self.clk)
        self.payload.value = word
        self.valid.value = 1
        while True:
            await ReadOnly()
            if self.ready.value:
                await RisingEdge(self.clk)  # the beat is taken at this edge
                break
            await RisingEdge(self.ready)  # sleep until the core can take it
        self.valid.value = 0


class StreamSink(_StreamEnd):
    """Accepts a stream's beats; holds ``ready`` low with probability ``stall`` per cycle."""

    def __init__(self, dut, name: str, clk, rng: random.Random, stall: float):
        super().__init__(dut, name, clk, rng)
        self.stall = stall
        self.ready.value = 0

    async def recv(self, timeout: int = 1_000_000) -> int:
        if self.stall == 0:
            return await self._recv_ready()
        for _ in range(timeout):
            self.ready.value = int(self.rng.random() >= self.stall)
            await ReadOnly()
            fire = bool(self.valid.value) and bool(self.ready.value)
            word = int(self.payload.value) if fire else None
            await RisingEdge(self.clk)
            if fire:
                self.ready.value = 0
                return word
        raise TimeoutError(f"no beat on {self.valid._name} within {timeout} cycles")

    async def _recv_ready(self) -> int:
        # Without backpressure: hold ready and sleep until valid rises,
        # instead of waking the testbench on every clock.
        self.ready.value = 1
        while True:
            await ReadOnly()
            if self.valid.value:
                word = int(self.payload.value)
                await RisingEdge(self.clk)
                self.ready.value = 0
                return word
            await RisingEdge(self.valid)


class CoreTB:
    """Drives one core build; ``cfg`` is the JSON header of the data file."""

    def __init__(self, dut, cfg: dict):
        self.dut, self.cfg = dut, cfg
        self.rng = random.Random(cfg["seed"])
        stall = cfg["stall"]
        self.clk = dut.clk
        self.inputs = StreamSource(dut, "inputs", self.clk, self.rng, stall)
        self.write = StreamSource(dut, "write", self.clk, self.rng, stall)
        self.read = StreamSource(dut, "read", self.clk, self.rng, stall)
        self.spikes = StreamSink(dut, "spikes", self.clk, self.rng, stall)
        self.read_data = StreamSink(dut, "read_data", self.clk, self.rng, stall)
        self.fields = cfg["fields"]
        self.targets = cfg.get("targets", {})

    async def reset(self) -> None:
        cocotb.start_soon(Clock(self.clk, CLOCK_NS, unit="ns").start())
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.clk)

    async def load(self, writes: np.ndarray) -> None:
        f = self.fields["write"]
        for target, addr, data in writes.tolist():
            await self.write.send(pack(f, target=target, addr=addr, data=data))

    async def read_value(self, target: str, addr: int) -> int:
        await self.read.send(pack(self.fields["read"], target=self.targets[target], addr=addr))
        word = await self.read_data.recv()
        return unpack(self.fields["read_data"], word)["data"]

    async def step(self, events: list[int]) -> list[int]:
        f = self.fields["inputs"]

        async def send():
            for channel in events:
                await self.inputs.send(pack(f, channel=channel, last=0))
            await self.inputs.send(pack(f, channel=0, last=1))

        sender = cocotb.start_soon(send())
        spikes = []
        while True:
            beat = unpack(self.fields["spikes"], await self.spikes.recv())
            if beat["last"]:
                break
            spikes.append(beat["neuron"])
        await sender
        return spikes


def _first_difference(name, got, want, where):
    got, want = np.asarray(got, np.int64).reshape(-1), np.asarray(want, np.int64).reshape(-1)
    diff = np.flatnonzero(got != want)
    if len(diff):
        i = int(diff[0])
        return (f"{where}: {name}[{i}] = {int(got[i])} in RTL, {int(want[i])} in the golden model "
                f"({len(diff)} value(s) differ)")
    return None


async def _check(tb: CoreTB, data, checks: list, t, n: int, where: str) -> None:
    """Read every element of each check's target; fail on the first difference from golden."""
    for name, target, width in checks:
        want = data[f"expect_{name}{n}"]
        want = want if t is None else want[t]
        got = []
        for addr in range(want.size):
            word = await tb.read_value(target, addr)
            got.append(to_signed(word, width) if width else word)
        problem = _first_difference(name, got, want, where)
        if problem:
            raise AssertionError(problem)


@cocotb.test()
async def core_matches_golden(dut):
    """Every sample: CLEAR (unless it continues the last), its writes, its steps; after every step
    the spikes and each per-step check, at the end each final check, all against golden."""
    path = os.environ["DELREC_TB_DATA"]
    data = np.load(path, allow_pickle=False)
    cfg = json.loads(str(data["header"]))
    tb = CoreTB(dut, cfg)
    await tb.reset()
    N = cfg["neurons"]
    summary = []
    for n, sample in enumerate(cfg["samples"]):
        if sample.get("clear", True):
            await tb.write.send(pack(tb.fields["write"], target=tb.targets["CLEAR"], addr=0, data=0))
        await tb.load(data[f"writes{n}"])
        events = data[f"events{n}"]          # [E, 2]: (step, channel)
        steps = int(sample["steps"])
        bounds = np.searchsorted(events[:, 0], np.arange(steps + 1))
        want_spikes = data[f"spikes{n}"]
        cycles, step_cycles, rtl_spikes = [], [], []
        for t in range(steps):
            where = f"sample {n}, step {t}"
            began = get_sim_time(unit="ns")
            fired = await tb.step(events[bounds[t]:bounds[t + 1], 1].tolist())
            # the whole step as the testbench saw it: input events included
            step_cycles.append(int(round((get_sim_time(unit="ns") - began) / CLOCK_NS)))
            rtl_spikes += [[t, i] for i in fired]
            if sorted(fired) != fired or len(set(fired)) != len(fired):
                raise AssertionError(f"{where}: spikes not in increasing order: {fired}")
            got = np.zeros(N, np.int64)
            got[fired] = 1
            problem = _first_difference("spike", got, want_spikes[t], where)
            if problem:
                raise AssertionError(problem)
            await _check(tb, data, sample["checks"], t, n, where)
            cycles.append(await tb.read_value("COUNTER", cfg["counters"]["cycles"]))
        await _check(tb, data, sample["final"], None, n, f"sample {n}, end")
        scores = [to_signed(await tb.read_value("SCORE", k), cfg["score_bits"]) for k in range(cfg["classes"])]
        events_counted = await tb.read_value("COUNTER", cfg["counters"]["events"])
        summary.append(dict(network=n, cycles=cycles, step_cycles=step_cycles, events=events_counted,
                            spikes=rtl_spikes, scores=scores))
        if n % 64 == 63 or n == len(cfg["samples"]) - 1:   # progress survives a failure
            with open(path + ".summary.json", "w") as fh:
                json.dump(summary, fh)
