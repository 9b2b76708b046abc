"""Design-space sweep of the inference core: area from synthesis, cycles from simulation.

:func:`run_sweep` takes a grid of core builds (``N``, ``D``, ``P``, weight
width, delay queue) and devices. For each build it co-simulates a random
network of that size on random input in Verilator (bit-exact against the
golden model, :func:`delrec.sim.cosim.cosimulate`) and records the cycles per
step the core's counter measured; for each (build, device) it synthesises,
places and routes the core with YoWASP (:func:`delrec.hw.synth.synthesis_case`).
From both: steps per second at fmax, synaptic events per second and the
latency of one sample. Points run in parallel processes and are cached by a
hash of what determines them (gateware source, build, device, workload,
seed), so a re-run only does the new points. ``delrec sweep`` writes
``sweep.json``, ``sweep.md`` (a table) and ``sweep.png`` (area against
latency).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path

import numpy as np

__all__ = ["Workload", "sweep_builds", "run_sweep", "write_sweep_report", "gateware_version"]


@dataclass(frozen=True)
class Workload:
    """The activity a sweep point is measured on: a random network and random input.

    ``rate`` is the probability of an input event per channel and step;
    ``weight_scale`` the weights' fraction of their range (sets the
    recurrent activity); ``steps`` per sample; ``seed`` draws both.
    """

    steps: int = 20
    rate: float = 0.05
    weight_scale: float = 0.3
    seed: int = 0


def sweep_builds(inputs: int, classes: int, neurons, lanes, queues, delay_bits, weight_bits) -> list:
    """Every valid :class:`~delrec.build.CoreBuild` of the grid (axonal delays)."""
    from delrec.arith import CoreSpec
    from delrec.build import CoreBuild

    builds = []
    for n, p, q, d, w in product(neurons, lanes, queues, delay_bits, weight_bits):
        if n % p:
            continue
        spec = CoreSpec(delay_bits=d, weight_bits=w)
        builds.append(CoreBuild(inputs=inputs, neurons=n, classes=classes, spec=spec, lanes=p,
                                delay_kind="axonal", queue=q))
    if not builds:
        raise ValueError("The sweep grid is empty: every lane count must divide a neuron count")
    return builds


@functools.lru_cache(maxsize=None)
def gateware_version() -> str:
    """A hash of the gateware's source (``delrec.hw`` and the arithmetic it is written from).

    Part of every cache key: a point measured on other gateware is measured
    again, not reused.
    """
    import delrec.arith
    import delrec.hw

    digest = hashlib.sha256()
    files = sorted(Path(delrec.hw.__file__).parent.glob("*.py")) + [Path(delrec.arith.__file__)]
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _key(*parts) -> str:
    parts = [gateware_version(), *parts]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _cached(path: Path, compute):
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)
    return value


def _measure_cycles(build_dict: dict, workload: dict, cache: str) -> dict:
    """Cycles per step of one build on the workload (a process-pool job)."""
    from delrec.build import CoreBuild
    from delrec.image import FixedNetwork

    from .cosim import cosimulate

    w = Workload(**workload)
    build = CoreBuild.from_dict(build_dict)
    path = Path(cache) / "cycles" / f"{_key(build_dict, workload)}.json"

    def compute():
        rng = np.random.default_rng(w.seed)
        net = FixedNetwork.random(build.spec, build.inputs, build.neurons, build.classes, rng,
                                  delay_kind="axonal", weight_scale=w.weight_scale, reset="soft")
        x = (rng.random((w.steps, build.inputs)) < w.rate).astype(np.int64)
        result = cosimulate(build, [net], [x], stall=0.0, seed=w.seed, check_state=False,
                            build_root=Path(cache) / "verilator")
        cycles = result.cycles[0]
        return dict(cycles_per_step=float(np.mean(cycles)), cycles_per_step_max=int(np.max(cycles)),
                    input_events_per_step=float(x.sum() / w.steps),
                    synaptic_events_per_step=float(result.events[0] / w.steps),
                    spikes_per_step=float(result.spikes[0].sum() / w.steps), bit_exact=True)

    return _cached(path, compute)


def _synthesise(build_dict: dict, device: str, seed: int, cache: str) -> dict:
    """One (build, device) synthesis (a process-pool job)."""
    from delrec.build import CoreBuild
    from delrec.hw.synth import synthesis_case

    build = CoreBuild.from_dict(build_dict)
    key = _key(build_dict, device, seed)
    path = Path(cache) / "synth" / f"{key}.json"
    return _cached(path, lambda: synthesis_case(build, device, Path(cache) / "runs" / key, seed=seed))


def run_sweep(builds: list, devices: list, out_dir, workload: Workload = Workload(), jobs: int = 2,
              seed: int = 1, progress: bool = True) -> list[dict]:
    """Measure every build (cycles) and every (build, device) (area, fmax); return the points.

    Each point: the build, the device, the synthesis record (``status``,
    ``lut``, ``ff``, ``bram``, ``spram``, ``dsp``, ``fmax_mhz``, ...), the
    measured cycles, and where it placed and routed ``steps_per_second``,
    ``synaptic_events_per_second`` and ``sample_latency_ms`` (one sample of
    ``workload.steps`` steps at fmax).
    """
    from tqdm.auto import tqdm

    cache = str(Path(out_dir).resolve() / "cache")
    build_dicts = [b.to_dict() for b in builds]
    work = asdict(workload)
    cycles, areas = {}, {}
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {}
        for n, b in enumerate(build_dicts):
            futures[pool.submit(_measure_cycles, b, work, cache)] = ("cycles", n, None)
            for device in devices:
                futures[pool.submit(_synthesise, b, device, seed, cache)] = ("synth", n, device)
        bar = tqdm(total=len(futures), desc="sweep", unit="job", disable=not progress)
        for future in as_completed(futures):
            kind, n, device = futures[future]
            if kind == "cycles":
                cycles[n] = future.result()
            else:
                areas[n, device] = future.result()
            bar.update()
        bar.close()
    points = []
    for n, b in enumerate(build_dicts):
        for device in devices:
            area, cyc = areas[n, device], cycles[n]
            point = dict(neurons=b["neurons"], lanes=b["lanes"], queue=b["queue"],
                         delay_depth=1 << b["spec"]["delay_bits"], weight_bits=b["spec"]["weight_bits"],
                         device=device, build=b, synthesis=area, cycles=cyc)
            if area.get("status") == "placed_and_routed" and area.get("fmax_mhz"):
                hz = area["fmax_mhz"] * 1e6
                point["steps_per_second"] = hz / cyc["cycles_per_step"]
                point["synaptic_events_per_second"] = cyc["synaptic_events_per_step"] * \
                    point["steps_per_second"]
                point["sample_latency_ms"] = 1e3 * workload.steps / point["steps_per_second"]
            points.append(point)
    return points


def write_sweep_report(points: list[dict], out_dir, workload: Workload = Workload()) -> dict:
    """``sweep.json``, ``sweep.md`` and ``sweep.png`` (area against latency) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(dict(workload=asdict(workload), points=points), indent=2))
    rows = ["| device | N | P | queue | D | weight bits | status | LUT | FF | BRAM | SPRAM | DSP "
            "| fmax MHz | cycles/step | steps/s | sample latency ms |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (p["device"], p["neurons"], p["lanes"], p["queue"],
                                          p["delay_depth"], p["weight_bits"])):
        s = p["synthesis"]

        def num(value, fmt="{:,}"):
            return "-" if value is None else fmt.format(value)

        rows.append(f"| {p['device']} | {p['neurons']} | {p['lanes']} | {p['queue']} | "
                    f"{p['delay_depth']} | {p['weight_bits']} | {s.get('status')} | "
                    f"{num(s.get('lut'))} | {num(s.get('ff'))} | {num(s.get('bram'))} | "
                    f"{num(s.get('spram'))} | {num(s.get('dsp'))} | {num(s.get('fmax_mhz'), '{:.1f}')} | "
                    f"{p['cycles']['cycles_per_step']:,.0f} | {num(p.get('steps_per_second'), '{:,.0f}')} | "
                    f"{num(p.get('sample_latency_ms'), '{:.2f}')} |")
    text = (f"Workload: a random network per build, {workload.steps} steps, input rate "
            f"{workload.rate}, weights at {workload.weight_scale} of their range; cycles from "
            f"Verilator (bit-exact), area and fmax from YoWASP yosys + nextpnr.\n\n" + "\n".join(rows) + "\n")
    (out / "sweep.md").write_text(text)
    plot_area_latency(points, out / "sweep.png", workload)
    return dict(json=str(out / "sweep.json"), markdown=str(out / "sweep.md"), plot=str(out / "sweep.png"))


def plot_area_latency(points: list[dict], path, workload: Workload = Workload()) -> None:
    """Logic (LUT4) against the latency of one sample, one marker per placed-and-routed point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"history": "o", "ring": "s"}
    placed = [p for p in points if p.get("sample_latency_ms")]
    devices = sorted({p["device"] for p in placed})
    colors = dict(zip(devices, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for p in placed:
        ax.scatter(p["sample_latency_ms"], p["synthesis"]["lut"], marker=markers.get(p["queue"], "x"),
                   color=colors[p["device"]], s=40)
        ax.annotate(f"N{p['neurons']} P{p['lanes']}", (p["sample_latency_ms"], p["synthesis"]["lut"]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    for device in devices:
        ax.scatter([], [], color=colors[device], label=device)
    for queue, marker in markers.items():
        ax.scatter([], [], color="gray", marker=marker, label=f"{queue} queue")
    ax.set(xscale="log", xlabel=f"latency of one {workload.steps}-step sample at fmax (ms)",
           ylabel="LUT4", title="inference core: area against latency")
    if placed:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no point placed and routed", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
