"""cocotb testbench of the inference core: every spike, membrane and readout value, every step.

Runs inside the simulator process; it never imports torch or the golden
model. Its input is one ``.npz`` (path in ``$DELREC_TB_DATA``) written by
:mod:`delrec.sim.cosim` in the pytest process: the core's port layout, the
memory writes of each network (from the model compiler), the input events of
each step and the golden trace. For each network the testbench clears the
core, loads the network through the ``write`` stream, then for every step
sends the events, collects the spikes, reads back every membrane, readout
value and score, and compares them with the golden trace. Every stream gets
random idle cycles (``valid`` gaps) or backpressure (``ready`` low) with the
probabilities in the file. The first difference fails the test with its
network, step, neuron and both values; a summary (cycles per step, events)
is written next to the data for the benchmarks.
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


def _first_difference(name, got, want, step, net_index):
    diff = np.flatnonzero(np.asarray(got) != np.asarray(want))
    if len(diff):
        i = int(diff[0])
        return (f"network {net_index}, step {step}: {name}[{i}] = {int(got[i])} in RTL, "
                f"{int(want[i])} in the golden model ({len(diff)} value(s) differ this step)")
    return None


@cocotb.test()
async def core_matches_golden(dut):
    path = os.environ["DELREC_TB_DATA"]
    data = np.load(path, allow_pickle=False)
    cfg = json.loads(str(data["header"]))
    tb = CoreTB(dut, cfg)
    await tb.reset()
    N, K = cfg["neurons"], cfg["classes"]
    v_bits, r_bits, s_bits = cfg["v_bits"], cfg["readout_bits"], cfg["score_bits"]
    summary = []
    for n in range(cfg["networks"]):
        await tb.write.send(pack(tb.fields["write"], target=tb.targets["CLEAR"], addr=0, data=0))
        await tb.load(data[f"writes{n}"])  # empty when the network is the previous one
        events = data[f"events{n}"]          # [E, 2]: (step, channel)
        steps = int(cfg["steps"][n])
        bounds = np.searchsorted(events[:, 0], np.arange(steps + 1))
        want_spikes, want_v = data[f"spikes{n}"], data[f"v{n}"]
        want_r, want_s = data[f"readout{n}"], data[f"scores{n}"]
        cycles, step_cycles, rtl_spikes = [], [], []
        for t in range(steps):
            began = get_sim_time(unit="ns")
            fired = await tb.step(events[bounds[t]:bounds[t + 1], 1].tolist())
            # the whole step as the testbench saw it: input events included
            step_cycles.append(int(round((get_sim_time(unit="ns") - began) / CLOCK_NS)))
            rtl_spikes += [[t, i] for i in fired]
            got = np.zeros(N, np.int64)
            got[fired] = 1
            if sorted(fired) != fired or len(set(fired)) != len(fired):
                raise AssertionError(f"network {n}, step {t}: spikes not in increasing order: {fired}")
            problem = _first_difference("spike", got, want_spikes[t], t, n)
            if cfg["check_state"] and problem is None:
                v = [to_signed(await tb.read_value("MEMBRANE", i), v_bits) for i in range(N)]
                problem = _first_difference("membrane", v, want_v[t], t, n)
                if problem is None:
                    r = [to_signed(await tb.read_value("READOUT", k), r_bits) for k in range(K)]
                    problem = _first_difference("readout", r, want_r[t], t, n)
                if problem is None:
                    s = [to_signed(await tb.read_value("SCORE", k), s_bits) for k in range(K)]
                    problem = _first_difference("score", s, want_s[t], t, n)
            if problem:
                raise AssertionError(problem)
            cycles.append(await tb.read_value("COUNTER", cfg["counters"]["cycles"]))
        scores = [to_signed(await tb.read_value("SCORE", k), s_bits) for k in range(K)]
        problem = _first_difference("score", scores, want_s[steps - 1], steps - 1, n)
        if problem:
            raise AssertionError(problem)
        events_counted = await tb.read_value("COUNTER", cfg["counters"]["events"])
        summary.append(dict(network=n, cycles=cycles, step_cycles=step_cycles, events=events_counted,
                            spikes=rtl_spikes,
                            scores=scores))
    with open(path + ".summary.json", "w") as fh:
        json.dump(summary, fh)
