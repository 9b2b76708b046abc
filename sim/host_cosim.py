"""End-to-end co-simulation: checkpoint -> compiler -> host protocol over UART -> RTL top.

:func:`cosimulate_host` compiles a network for a core build, computes the
golden spikes and scores of every sample in this process, builds the FPGA
top (:class:`delrec.hw.host_top.HostTop`: UART, host link, core) with
Verilator and runs :mod:`delrec.sim.tb_host`, in which the unchanged host
driver (:class:`delrec.firmware.driver.CoreDriver`) loads the network and
streams the samples through the top's serial pins. Every step's spikes and
every sample's scores must equal the golden model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from delrec.build import CoreBuild
from delrec.firmware.compiler import compile_network
from delrec.golden.fixed import run_fixed
from delrec.image import FixedNetwork

from .runner import build_component, default_build_root, run_cocotb

__all__ = ["cosimulate_host"]


def cosimulate_host(build: CoreBuild, net: FixedNetwork, inputs: list[np.ndarray], clocks_per_bit: int = 4,
                    byte_timeout: int = 4096, build_root: Path | None = None, seed: int = 0) -> dict:
    """Run ``inputs`` (``[T, C]`` event counts each) through the simulated top; return the summary.

    The summary holds, per sample, the prediction and the core's counters
    (cycles of the last step, synaptic events, steps), and the link's frame
    statistics.
    """
    from delrec.hw.host_top import HostTop

    max_input = max(1, max(int(np.max(x)) for x in inputs))
    image = compile_network(net, build, max_input=max_input)
    arrays = {"writes": image.writes}
    for n, x in enumerate(inputs):
        x = np.asarray(x, dtype=np.int64)
        padded = np.zeros((x.shape[0], build.inputs), np.int64)
        padded[:, :x.shape[1]] = x
        trace = run_fixed(image.network, padded[:, None, :])
        arrays.update({f"x{n}": padded, f"spikes{n}": trace.spikes[:, 0], f"scores{n}": trace.scores[-1, 0]})
    header = dict(samples=len(inputs), clocks_per_bit=clocks_per_bit, score_bits=build.spec.score_bits,
                  timeout_cycles=byte_timeout * 4 + 100_000,
                  geometry=dict(inputs=build.inputs, neurons=build.neurons, classes=build.classes,
                                lanes=build.lanes, delay_bits=build.spec.delay_bits, queue=build.queue,
                                delay_kind=build.delay_kind))
    name = (f"host_top_{build.queue}_{build.delay_kind}_c{build.inputs}_n{build.neurons}"
            f"_k{build.classes}_p{build.lanes}_d{build.spec.depth}_b{clocks_per_bit}")
    top = HostTop(build, clocks_per_bit=clocks_per_bit, byte_timeout=byte_timeout)
    sim = build_component(top, name, build_root or default_build_root())
    work = sim.build_dir / f"run-{seed}"
    work.mkdir(parents=True, exist_ok=True)
    data_path = work / "host.npz"
    np.savez(data_path, header=np.array(json.dumps(header)), **arrays)
    run_cocotb(sim, "delrec.sim.tb_host", env={"DELREC_TB_DATA": data_path}, test_dir=work, seed=seed)
    return json.loads(Path(str(data_path) + ".summary.json").read_text())
