"""cocotb testbench of the online-learning core: every spike, state value and update, every sample.

Runs inside the simulator process and never imports torch or the golden
model. Its input is one ``.npz`` (path in ``$DELREC_TB_DATA``) written by
:mod:`delrec.sim.online_cosim`: the initial writes, and per sample the rule
writes (LUT and registers, when they change), the input events, the signal
beats and the golden values. Per sample the testbench clears the core, runs
the steps and compares each step's spikes (and, with ``check_state``, every
membrane and readout potential, and on a per-step core every delay trace,
learning signal, delay and readout weight and bias after the step's
update); then the scores; then, when the sample learns, (with
``check_state``) every trace, eligibility sum and spike count, sends the
signal beats, and compares the learning signal and every parameter after
the update (a per-step core: every parameter after the last step). Streams get random idle cycles and
backpressure. The first difference fails the test naming the sample, step,
quantity and index with both values; a summary (cycles, scores, counters) is
written next to the data.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from .tb_core import CoreTB, StreamSource, pack, to_signed, unpack


class OnlineTB(CoreTB):
    """Drives one online-core build: the inference core's testbench plus the ``signal`` stream."""

    def __init__(self, dut, cfg: dict):
        super().__init__(dut, cfg)
        self.signal = StreamSource(dut, "signal", self.clk, self.rng, cfg["stall"]) \
            if cfg["signal"] == "sample" else None   # a per-step core forms its own signal
        self.write_targets, self.read_targets = cfg["write_targets"], cfg["read_targets"]

    async def clear(self) -> None:
        await self.write.send(pack(self.fields["write"], target=self.write_targets["CLEAR"],
                                   addr=0, data=0))

    async def read_values(self, target: str, count: int, bits: int | None) -> list[int]:
        out = []
        for addr in range(count):
            await self.read.send(pack(self.fields["read"], target=self.read_targets[target], addr=addr))
            word = unpack(self.fields["read_data"], await self.read_data.recv())["data"]
            out.append(to_signed(word, bits) if bits else word)
        return out

    async def counter(self, name: str) -> int:
        await self.read.send(pack(self.fields["read"], target=self.read_targets["COUNTER"],
                                  addr=self.cfg["counters"][name]))
        return unpack(self.fields["read_data"], await self.read_data.recv())["data"]

    async def send_signal(self, beats: np.ndarray) -> None:
        f = self.fields["signal"]
        for kind, index, value, last in beats.tolist():
            await self.signal.send(pack(f, kind=kind, index=index, value=value, last=last))


def _compare(what: str, got, want, where: str) -> None:
    got, want = np.asarray(got, np.int64).reshape(-1), np.asarray(want, np.int64).reshape(-1)
    if got.shape != want.shape:
        raise AssertionError(f"{where}: {what} has {got.size} values in RTL, {want.size} in golden")
    diff = np.flatnonzero(got != want)
    if len(diff):
        n = int(diff[0])
        raise AssertionError(f"{where}: {what}[{n}] = {int(got[n])} in RTL, {int(want[n])} in the "
                             f"golden model ({len(diff)} of {got.size} differ)")


@cocotb.test()
async def online_core_matches_golden(dut):
    path = os.environ["DELREC_TB_DATA"]
    data = np.load(path, allow_pickle=False)
    cfg = json.loads(str(data["header"]))
    tb = OnlineTB(dut, cfg)
    await tb.reset()
    N, K = cfg["neurons"], cfg["classes"]
    w = cfg["widths"]
    per_step = cfg["signal"] == "step"
    await tb.load(data["writes_init"])
    summary = []
    for n, sample in enumerate(cfg["samples"]):
        await tb.clear()
        await tb.load(data[f"rule{n}"])
        events = data[f"events{n}"]
        steps = sample["steps"]
        bounds = np.searchsorted(events[:, 0], np.arange(steps + 1))
        spikes = np.zeros((steps, N), np.int64)
        cycles = []
        for t in range(steps):
            where = f"sample {n}, step {t}"
            fired = await tb.step(events[bounds[t]:bounds[t + 1], 1].tolist())
            if sorted(fired) != fired or len(set(fired)) != len(fired):
                raise AssertionError(f"{where}: spikes not in increasing order: {fired}")
            spikes[t, fired] = 1
            _compare("spike", spikes[t], data[f"spikes{n}"][t], where)
            if cfg["check_state"]:
                _compare("membrane", await tb.read_values("MEMBRANE", N, w["v"]), data[f"v{n}"][t], where)
                _compare("output", await tb.read_values("OUTPUT", K, w["output"]),
                         data[f"outputs{n}"][t], where)
                if per_step and sample["learn"]:  # after this step's update
                    for name, target, width in (("step_trace_d", "TRACE_D", w["trace"]),
                                                ("step_signal", "SIGNAL", w["signal"]),
                                                ("step_d_in", "DELAY", None),
                                                ("step_w_out", "W_OUT", w["weight"]),
                                                ("step_b_out", "B_OUT", w["bias"])):
                        key = f"{name}{n}"
                        if key in data.files:
                            want = data[key][t]
                            _compare(name[5:], await tb.read_values(target, want.size, width), want,
                                     where)
            cycles.append(await tb.counter("STEP_CYCLES"))
        where = f"sample {n}, end"
        scores = await tb.read_values("SCORE", K, w["score"])
        _compare("score", scores, data[f"scores{n}"], where)
        record = dict(sample=n, step_cycles=cycles, scores=scores,
                      spikes=int(spikes.sum()))
        if sample["learn"] and per_step:  # every update came with its step
            where = f"sample {n}, after its last step"
            for name, target, width in (("w_in", "W_IN", w["weight"]), ("d_in", "DELAY", None),
                                        ("bias", "BIAS", w["bias"]), ("w_out", "W_OUT", w["weight"]),
                                        ("b_out", "B_OUT", w["bias"]), ("w_rec", "W_REC", w["weight"])):
                if f"{name}{n}" in data.files:
                    want = data[f"{name}{n}"]
                    _compare(name, await tb.read_values(target, want.size, width), want, where)
        elif sample["learn"]:
            if cfg["check_state"]:
                for name, target, width in (("trace_w", "TRACE_W", w["trace"]),
                                            ("trace_d", "TRACE_D", w["trace"]),
                                            ("trace_b", "TRACE_B", w["trace"]),
                                            ("elig_w", "ELIG_W", w["elig"]),
                                            ("elig_d", "ELIG_D", w["elig"]),
                                            ("elig_b", "ELIG_B", w["elig"]),
                                            ("count", "SPIKE_COUNT", None)):
                    key = f"{name}{n}"
                    if key in data.files:
                        want = data[key]
                        _compare(name, await tb.read_values(target, want.size, width), want, where)
            await tb.send_signal(data[f"beats{n}"])
            where = f"sample {n}, after the update"
            record["update_cycles"] = await tb.counter("UPDATE_CYCLES")
            _compare("learning signal", await tb.read_values("SIGNAL", N, w["signal"]),
                     data[f"signal{n}"], where)
            for name, target, width in (("w_in", "W_IN", w["weight"]), ("d_in", "DELAY", None),
                                        ("bias", "BIAS", w["bias"]), ("w_out", "W_OUT", w["weight"]),
                                        ("b_out", "B_OUT", w["bias"])):
                want = data[f"{name}{n}"]
                _compare(name, await tb.read_values(target, want.size, width), want, where)
        record["dropped_events"] = await tb.counter("DROPPED_EVENTS")
        record["bad_signals"] = await tb.counter("BAD_SIGNALS")
        record["overruns"] = await tb.counter("OVERRUNS")
        summary.append(record)
        if n % 64 == 63 or n == len(cfg["samples"]) - 1:  # progress survives a failure
            with open(path + ".summary.json", "w") as fh:
                json.dump(summary, fh)
