"""Cycles per step of the RTL core against the bound max(N/P, events/P), and Verilator speed.

For each delay-queue architecture (future-input ring, spike history) and
P in {1, 2, 4}, the core is built with Verilator and run through the cocotb
testbench (no stalls, spikes compared every step with the golden model) on

* the quantized spoken-digit network (``--image``, a one-hidden-layer DelRec
  quantized by ``delrec quantize``) on real test recordings, when given;
* random networks of ``--neurons`` neurons at three input activity levels.

Per step the bound is ``max(N/P, E/P)`` with ``E = N (input events + spikes)
+ K spikes``: the weight reads one step needs if every lane reads one weight
per cycle. Reported per case: cycles per step (mean, from the step's first input beat
to its last spike beat, measured by the testbench with no stalls; and the
core's own CYCLES counter, which starts at the last input beat), bound per
step (mean),
their ratio, and the simulator's speed (steps and clock cycles per second of
wall time, testbench included, builds excluded). JSON out.

    python benchmarks/core_cycles.py --image runs/.../fixed.npz --out benchmarks/core_cycles.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def bound_per_step(trace, x: np.ndarray, neurons: int, classes: int, lanes: int) -> np.ndarray:
    spikes = trace.spikes[:, 0].sum(-1)
    events = neurons * (x.sum(-1) + spikes) + classes * spikes
    return np.maximum(neurons / lanes, events / lanes)


def run_case(name, build, networks, inputs, root):
    from delrec.hw.core import InferenceCore
    from delrec.sim.cosim import _module_name, cosimulate
    from delrec.sim.runner import build_component

    t0 = time.perf_counter()
    build_component(InferenceCore(build), _module_name(build), root)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = cosimulate(build, networks, inputs, stall=0.0, seed=0, check_state=False, build_root=root)
    sim_s = time.perf_counter() - t0
    cycles = np.concatenate([np.asarray(c) for c in result.step_cycles])  # input phase included
    compute = np.concatenate([np.asarray(c) for c in result.cycles])
    bound = np.concatenate([bound_per_step(t, x, build.neurons, build.classes, build.lanes)
                            for t, x in zip(result.golden, inputs)])
    steps = len(cycles)
    return dict(case=name, queue=build.queue, lanes=build.lanes, neurons=build.neurons,
                inputs=build.inputs, classes=build.classes, depth=build.spec.depth, steps=steps,
                cycles_per_step=float(cycles.mean()), bound_per_step=float(bound.mean()),
                cycles_after_last_input=float(compute.mean()),
                ratio_to_bound=float(cycles.sum() / bound.sum()),
                spikes_per_neuron_per_step=float(np.mean([t.spikes.mean() for t in result.golden])),
                build_seconds=build_s, sim_seconds=sim_s, steps_per_second=steps / sim_s,
                cycles_per_second=float(cycles.sum()) / sim_s, bit_exact=True)


def main(argv=None) -> int:
    from tqdm.auto import tqdm

    from delrec.arith import CoreSpec
    from delrec.build import QUEUE_KINDS, CoreBuild
    from delrec.image import FixedNetwork

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path, default=None, help="quantized network (delrec quantize)")
    p.add_argument("--samples", type=int, default=5, help="real samples per case")
    p.add_argument("--neurons", type=int, default=64)
    p.add_argument("--inputs", type=int, default=32)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--lanes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--build-root", type=Path, default=Path("build/sim"))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    cases = []
    rng = np.random.default_rng(0)
    spec = CoreSpec()
    for rate in (0.02, 0.05, 0.15):
        net = FixedNetwork.random(spec, args.inputs, args.neurons, 10, rng, weight_scale=0.3)
        x = (rng.random((args.steps, args.inputs)) < rate).astype(np.int64)
        cases.append((f"random-input{int(rate * 100)}%", net, [x]))
    if args.image:
        from delrec.golden.tasks.base import load_task

        net = FixedNetwork.load(args.image)
        task = load_task(net.meta["task"], **net.meta.get("task_options", {}))
        xs = [np.asarray(task.test[i][0], dtype=np.int64) for i in range(args.samples)]
        cases.append((f"{net.meta['task']} ({args.samples} test samples)", net, xs))
    results = []
    todo = [(c, q, P) for c in cases for q in QUEUE_KINDS for P in args.lanes]
    for (name, net, xs), queue, lanes in tqdm(todo, desc="core cycles"):
        neurons = -(-net.neurons // lanes) * lanes
        build = CoreBuild(inputs=net.inputs, neurons=neurons, classes=net.classes, spec=net.spec,
                          lanes=lanes, delay_kind=net.delay_kind, queue=queue)
        results.append(run_case(name, build, [net] * len(xs), xs, args.build_root))
    report = dict(machine=platform.processor() or platform.machine(), python=platform.python_version(),
                  note="cycles from the core's CYCLES counter in Verilator; bound max(N/P, E/P), "
                       "E = N (input events + spikes) + K spikes", results=results)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
