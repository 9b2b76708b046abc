"""Co-simulation of the inference core (Verilator + cocotb) against the fixed-point golden model.

:func:`cosimulate` compiles each network for one core build
(:func:`delrec.firmware.compiler.compile_network`), runs the golden model
(:func:`delrec.golden.fixed.run_fixed`) in this process, writes the writes,
inputs and golden trace to one ``.npz``, builds the core once with Verilator
and runs :mod:`delrec.sim.tb_core`, which compares every spike and (with
``check_state``) every membrane, readout value and score at every step. A
difference raises :class:`~delrec.sim.runner.SimulationFailure` naming the
network, step, neuron and both values; ``waves=True`` dumps a VCD.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from delrec.arith import RESET_MODES
from delrec.build import CoreBuild
from delrec.firmware.compiler import compile_network
from delrec.golden.fixed import run_fixed
from delrec.image import FixedNetwork

from .runner import SimulationFailure, build_component, default_build_root, run_testbench

__all__ = ["CosimResult", "cosimulate", "port_fields", "SimulationFailure", "input_events"]


def port_fields(build: CoreBuild) -> dict:
    """``{stream: {field: [offset, width]}}`` of the core's stream payloads."""
    from delrec.hw import ports

    g = ports.CoreGeometry(build)
    layouts = dict(inputs=ports.input_layout(g), spikes=ports.spike_layout(g), write=ports.write_layout(g),
                   read=ports.read_layout(g), read_data=ports.read_data_layout(g))
    return {stream: {name: [field.offset, field.width] for name, field in layout}
            for stream, layout in layouts.items()}


def _module_name(build: CoreBuild) -> str:
    extra = ("_in" if build.input_delays else "") + (f"_learn_r{build.max_reach}" if build.learns else "")
    return (f"core_{build.queue}_{build.delay_kind}_c{build.inputs}_n{build.neurons}"
            f"_k{build.classes}_p{build.lanes}_d{build.spec.depth}{extra}")


@dataclass
class CosimResult:
    """Per network: what the RTL reported, and the golden trace it was compared with.

    ``cycles[n]`` per step (the core's CYCLES counter: from the step's
    ``last=1`` input beat to its ``last=1`` spike beat), ``step_cycles[n]``
    per step as the testbench measured it from the first input beat (input
    events included; with ``stall=0`` this is the core's whole step), ``events[n]`` synaptic
    events counted by the core, ``spikes[n]`` the RTL's spikes ``[T, N]``
    as received on its output stream, ``scores[n]`` its final scores.
    """

    build: CoreBuild
    cycles: list[list[int]]
    step_cycles: list[list[int]]
    events: list[int]
    spikes: list[np.ndarray]
    scores: list[list[int]]
    golden: list  # FixedTrace per network (batch of one)

    def predictions(self) -> list[int]:
        """The RTL's class per network: the first index of the largest score."""
        return [int(np.argmax(s)) for s in self.scores]

    def to_dict(self) -> dict:
        return dict(build=self.build.to_dict(), cycles=self.cycles, events=self.events)


def cosimulate(build: CoreBuild, networks: list[FixedNetwork], inputs: list[np.ndarray],
               stall: float = 0.2, seed: int = 0, check_state: bool = True, waves: bool = False,
               build_root: Path | None = None, work_dir: Path | None = None) -> CosimResult:
    """Run ``networks[n]`` on ``inputs[n]`` (``[T, C]`` event counts) in RTL and golden; compare.

    Parameters
    ----------
    stall : float
        Probability of an idle cycle before each beat the testbench sends
        and of ``ready`` low on each cycle it receives.
    check_state : bool
        Also compare every membrane, readout value and score at every step
        (else spikes at every step and the final scores).
    """
    if len(networks) != len(inputs):
        raise ValueError(f"Got {len(networks)} networks but {len(inputs)} input sequences")
    spec = build.spec
    arrays, samples, goldens = {}, [], []
    for n, (net, x) in enumerate(zip(networks, inputs)):
        x = np.asarray(x, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != net.inputs:
            raise ValueError(f"Input {n} must have shape [T, {net.inputs}], not {x.shape}")
        max_input = max(1, int(x.max()) if x.size else 1)
        image = compile_network(net, build, max_input=max_input)
        x_padded = np.zeros((x.shape[0], build.inputs), np.int64)
        x_padded[:, :net.inputs] = x
        trace = run_fixed(image.network, x_padded[:, None, :])
        goldens.append(trace)
        same = n > 0 and net is networks[n - 1]  # loaded already: CLEAR keeps the parameters
        arrays.update({f"writes{n}": image.writes[:0] if same else image.writes,
                       f"events{n}": input_events(x_padded), f"spikes{n}": trace.spikes[:, 0],
                       f"expect_score{n}": trace.scores[-1, 0] if x.shape[0] else np.zeros(build.classes)})
        checks = []
        if check_state:
            checks = [["membrane", "MEMBRANE", spec.v_bits], ["readout", "READOUT", spec.readout_bits],
                      ["scores", "SCORE", spec.score_bits]]
            arrays.update({f"expect_membrane{n}": trace.v[:, 0], f"expect_readout{n}": trace.readout[:, 0],
                           f"expect_scores{n}": trace.scores[:, 0]})
        samples.append(dict(steps=int(x.shape[0]), checks=checks, final=[["score", "SCORE", spec.score_bits]]))
    summary, _ = _run(build, arrays, samples, stall, seed, waves, build_root, work_dir, "cosim.npz")
    spikes = []
    for s, sample in zip(summary, samples):
        raster = np.zeros((sample["steps"], build.neurons), np.int64)
        for t, i in s["spikes"]:
            raster[t, i] = 1
        spikes.append(raster)
    return CosimResult(build=build, cycles=[s["cycles"] for s in summary],
                       step_cycles=[s["step_cycles"] for s in summary],
                       events=[s["events"] for s in summary], spikes=spikes,
                       scores=[s["scores"] for s in summary], golden=goldens)


def _run(build: CoreBuild, arrays: dict, samples: list, stall: float, seed: int, waves: bool,
         build_root, work_dir, data_name: str) -> tuple[list, Path]:
    """Build the core once, run :mod:`delrec.sim.tb_core` on the samples, return its summary."""
    from delrec.hw.core import InferenceCore
    from delrec.hw.ports import Counter, ReadTarget, WriteTarget

    if stall >= 1 or stall < 0:
        raise ValueError(f"The idle and stall probability must be in [0, 1), not {stall!r}: at 1 no beat "
                         f"would ever pass")
    spec = build.spec
    header = dict(seed=seed, stall=stall, samples=samples, neurons=build.neurons, classes=build.classes,
                  score_bits=spec.score_bits, fields=port_fields(build),
                  targets={**{t.name: t.value for t in ReadTarget}, "CLEAR": WriteTarget.CLEAR.value},
                  counters={"cycles": int(Counter.CYCLES), "events": int(Counter.SYNAPTIC_EVENTS)})
    build_root = Path(build_root or default_build_root())
    sim = build_component(InferenceCore(build), _module_name(build), build_root, waves=waves)
    work_dir = Path(work_dir or sim.build_dir / f"run-{seed}")
    hint = (f"waveform: {Path(work_dir).resolve() / 'dump.vcd'}" if waves else
            "rerun with waves=True (delrec cosim --waves) for a VCD")
    summary = run_testbench(sim, "delrec.sim.tb_core", header, arrays, work_dir, data_name, seed=seed,
                            waves=waves, hint=hint)
    return summary, work_dir


def input_events(x: np.ndarray) -> np.ndarray:
    """``[E, 2]`` rows ``(step, channel)``, one per event of the counts ``x [T, C]``, in step order."""
    step, channel = np.nonzero(x)
    return np.repeat(np.stack([step, channel], 1), x[step, channel], axis=0).astype(np.int64)


def random_cases(build: CoreBuild, count: int, rng: np.random.Generator, steps=(20, 40)):
    """``count`` random networks that fit ``build`` and their inputs ``[T, C']``.

    Sizes are drawn within the build (``C' <= C``, ``N' <= N``, ``K' <= K``);
    weights from a tenth of the range to full range; input rates from 2 %
    to 60 % with up to 3 events per channel and step; every fourth network
    gets a large bias so that membranes and readouts reach their saturation
    limits; delays include ``0`` and ``D - 1``; resets alternate; a build
    with input delays gets networks with random input delays.
    """
    networks, inputs = [], []
    for n in range(count):
        C = int(rng.integers(1, build.inputs + 1))
        N = int(rng.integers(max(1, build.neurons // 2), build.neurons + 1))
        K = int(rng.integers(1, build.classes + 1))
        max_input = int(rng.integers(1, 4))
        net = FixedNetwork.random(build.spec, C, N, K, rng, delay_kind=build.delay_kind,
                                  weight_scale=float(rng.uniform(0.1, 1.0)),
                                  reset=RESET_MODES[n % 2], recurrent=bool(n % 7),
                                  max_input=max_input, input_delay_kind=build.input_delays)
        if n % 4 == 3:  # saturation corner
            from delrec.arith import signed_range
            net.bias[:] = signed_range(build.spec.v_bits)[1] * rng.choice([-1, 1], size=N)
            net.bias_out[:] = signed_range(build.spec.readout_bits)[1] // 2
            net.theta = signed_range(build.spec.v_bits)[1]
            net.validate(max_input)
        T = int(rng.integers(steps[0], steps[1] + 1))
        rate = float(rng.uniform(0.02, 0.6))
        x = rng.integers(1, max_input + 1, size=(T, C)) * (rng.random((T, C)) < rate)
        networks.append(net)
        inputs.append(x)
    return networks, inputs
