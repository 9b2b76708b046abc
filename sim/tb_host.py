"""cocotb testbench of the FPGA top through its serial pins, driven by the real host driver.

The unchanged :class:`delrec.firmware.driver.CoreDriver` runs in a thread
bridged to the simulator (``cocotb.bridge``/``cocotb.resume``); its
transport turns bytes into UART bits on the top's ``rx`` pin and decodes the
``tx`` pin. The data file (``$DELREC_TB_DATA``, written by
:func:`delrec.sim.host_cosim.cosimulate_host`) holds the compiled network,
the input samples and the golden spikes and predictions. The test pings the
device, loads the network through WRITE frames, runs every sample (CLEAR,
STEP per time step, READ of the scores) and compares every step's spikes and
every prediction with the golden model; then it reads the link's STATS.
"""

from __future__ import annotations

import json
import os
from collections import deque

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, FallingEdge, First

try:  # public names in cocotb 2.x
    from cocotb import bridge, resume
except ImportError:  # pragma: no cover - depends on the cocotb build
    from cocotb._bridge import bridge, resume

from delrec.firmware.driver import CoreDriver


class UartHost:
    """The host end of an 8N1 line: drives ``rx`` of the device, decodes its ``tx``."""

    def __init__(self, dut, clocks_per_bit: int):
        self.clk, self.rx, self.tx = dut.clk, dut.rx, dut.tx
        self.cpb = clocks_per_bit
        self.received: deque[int] = deque()
        self.arrived = Event()
        self.rx.value = 1

    async def send(self, data: bytes) -> None:
        for byte in data:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.rx.value = bit
                await ClockCycles(self.clk, self.cpb)

    async def monitor(self) -> None:
        while True:
            await FallingEdge(self.tx)
            await ClockCycles(self.clk, self.cpb // 2)
            if int(self.tx.value):  # glitch, not a start bit
                continue
            byte = 0
            for i in range(8):
                await ClockCycles(self.clk, self.cpb)
                byte |= int(self.tx.value) << i
            await ClockCycles(self.clk, self.cpb)
            if int(self.tx.value) != 1:
                raise AssertionError("framing error on the device's tx line")
            self.received.append(byte)
            self.arrived.set()

    async def recv(self, size: int, timeout_cycles: int) -> bytes:
        # sleep until a byte arrives or the line has been quiet for timeout_cycles
        while len(self.received) < size:
            self.arrived.clear()
            timer = ClockCycles(self.clk, timeout_cycles)
            if await First(self.arrived.wait(), timer) is timer:
                break
        out = bytes(self.received.popleft() for _ in range(min(size, len(self.received))))
        return out


class SimTransport:
    """:class:`~delrec.firmware.driver.Transport` for a driver thread; timeouts in clock cycles."""

    def __init__(self, uart: UartHost, timeout_cycles: int):
        self._send = resume(uart.send)
        self._recv = resume(uart.recv)
        self.timeout_cycles = timeout_cycles

    def write(self, data: bytes) -> None:
        self._send(data)

    def read(self, size: int, timeout: float) -> bytes:
        return self._recv(size, self.timeout_cycles)


@cocotb.test()
async def host_link_runs_the_network(dut):
    path = os.environ["DELREC_TB_DATA"]
    data = np.load(path, allow_pickle=False)
    cfg = json.loads(str(data["header"]))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    uart = UartHost(dut, cfg["clocks_per_bit"])
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    cocotb.start_soon(uart.monitor())
    transport = SimTransport(uart, timeout_cycles=cfg["timeout_cycles"])

    @bridge
    def host():
        driver = CoreDriver(transport, timeout=1.0, retries=0)
        info = driver.ping()
        expected = cfg["geometry"]
        got = dict(inputs=info.inputs, neurons=info.neurons, classes=info.classes, lanes=info.lanes,
                   delay_bits=info.delay_bits, queue=info.queue, delay_kind=info.delay_kind)
        if got != expected:
            return dict(error=f"PING reports {got}, the build is {expected}")
        driver.write(data["writes"].tolist())
        report = []
        for n in range(cfg["samples"]):
            driver.clear()
            spikes = driver.run(data[f"x{n}"])
            want = data[f"spikes{n}"]
            if not np.array_equal(spikes, want):
                t, i = np.argwhere(spikes != want)[0]
                return dict(error=f"sample {n}, step {t}: spike of neuron {i} is {spikes[t, i]} "
                                  f"through the host link, {want[t, i]} in the golden model")
            scores = driver.scores(cfg["score_bits"])
            if scores != data[f"scores{n}"].tolist():
                return dict(error=f"sample {n}: scores {scores} through the host link, "
                                  f"{data[f'scores{n}'].tolist()} in the golden model")
            report.append(dict(sample=n, prediction=int(np.argmax(scores)), **driver.counters()))
        return dict(samples=report, stats=driver.stats())

    result = await host()
    with open(path + ".summary.json", "w") as fh:
        json.dump(result, fh)
    if "error" in result:
        raise AssertionError(result["error"])
