"""``delrec demo``: the whole path on the embedded default, and a report to read.

Stages (each writes into the report folder, each is timed):

1. **train** DelRec (BPTT, learnable axonal recurrent delays) on the task;
2. **quantize** it to the core's integer network (8-bit weights) and measure
   float and fixed-point accuracy on the test set;
3. **co-simulate** the RTL core (Verilator + cocotb) on test samples:
   every spike, membrane, readout value and score compared with the
   fixed-point golden model at every step; the RTL's own spikes and
   scores give its accuracy;
4. **synthesize** the core for iCE40 UP5K and ECP5 25F (YoWASP yosys and
   nextpnr) when the synthesis flow is installed;
5. **learn on chip**: the deployed network itself keeps learning its input
   delays, recurrent delays and readout on the learning core (the same
   core with its learning unit) for a few training samples in RTL, every
   step compared with the fixed-point three-factor rule;
6. **report**: ``report.html`` and ``report.md`` with accuracy float /
   fixed / RTL, the bit-exact verdict, the learned delay histogram, spike
   rasters of golden and RTL side by side, cycles per step and latency per
   sample, area and fmax, the area-latency plot and the on-chip learning
   result; every figure also as PNG.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DemoConfig", "run_demo"]


@dataclass
class DemoConfig:
    """What the demo runs; the defaults are the README's main job (about 10 minutes on 2 cores)."""

    task: str = "delayed-xor"
    task_options: dict = field(default_factory=dict)
    hidden: int = 64
    epochs: int | None = None
    seed: int = 0
    cosim_samples: int = 32
    state_samples: int = 4
    onchip_samples: int = 16
    lanes: int = 2
    queue: str = "history"
    devices: tuple = ("up5k", "ecp5-25f")
    clock_mhz: float = 25.0
    out: Path = Path("runs/demo")


class _Stages:
    def __init__(self, progress: bool):
        self.progress = progress
        self.times: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        if self.progress:
            print(f"[demo] {name} ...", flush=True)
        began = time.perf_counter()
        result = fn(*args, **kwargs)
        self.times[name] = time.perf_counter() - began
        if self.progress:
            print(f"[demo] {name}: {self.times[name]:.1f} s", flush=True)
        return result


def run_demo(config: DemoConfig, progress: bool = True) -> dict:
    """Run every stage; return the summary (also ``summary.json`` in ``config.out``)."""
    import torch

    from delrec.build import CoreBuild
    from delrec.golden.fixed import evaluate_quantized, quantize
    from delrec.golden.tasks.base import load_task, make_loader
    from delrec.golden.training import build_model, load_checkpoint, make_configs, train
    from delrec.sim.cosim import cosimulate

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(progress)
    task = load_task(config.task, **config.task_options)

    # 1. train
    model_config, train_config = make_configs(task, dict(
        hidden=[config.hidden], epochs=config.epochs, seed=config.seed, task_options=config.task_options))
    metrics = stages.run("train", train, model_config, train_config, out / "train", progress=progress,
                         task=task)
    model = build_model(load_checkpoint(out / "train" / "checkpoint.pt"))

    # 2. quantize
    test = task.split("test")
    max_input = max(1, max(int(test[i][0].max()) for i in range(len(test))))
    build_probe = CoreBuild(inputs=task.inputs, neurons=config.hidden, classes=task.classes)
    net = quantize(model, build_probe.spec, max_input=max_input)
    net.meta.update(task=config.task, task_options=config.task_options)
    net.save(out / "fixed.npz")
    quant = stages.run("quantize", evaluate_quantized, model, net, make_loader(test, 256))

    # 3. co-simulate
    neurons = -(-net.neurons // config.lanes) * config.lanes
    build = CoreBuild(inputs=net.inputs, neurons=neurons, classes=net.classes, spec=net.spec,
                      lanes=config.lanes, delay_kind=net.delay_kind, queue=config.queue)
    count = min(config.cosim_samples, len(test))
    xs = [np.asarray(test[i][0], dtype=np.int64) for i in range(count)]
    labels = np.array([int(test[i][1]) for i in range(count)])

    def cosim():
        state = cosimulate(build, [net] * min(count, config.state_samples), xs[:config.state_samples],
                           check_state=True, stall=0.2, seed=1, build_root=out / "sim")
        rest = cosimulate(build, [net] * count, xs, check_state=False, stall=0.0, seed=2,
                          build_root=out / "sim")
        return state, rest

    state_run, run = stages.run("co-simulate", cosim)
    rtl_pred = np.array(run.predictions())
    golden_pred = np.array([int(t.predictions()[0]) for t in run.golden])
    cycles = np.concatenate([np.asarray(c) for c in run.step_cycles])  # whole steps, inputs included
    steps_per_sample = xs[0].shape[0]
    cosim_summary = dict(
        samples=count, state_checked_samples=min(count, config.state_samples), bit_exact=True,
        rtl_accuracy=float((rtl_pred == labels).mean()),
        fixed_accuracy_same_samples=float((golden_pred == labels).mean()),
        cycles_per_step_mean=float(cycles.mean()), cycles_per_step_max=int(cycles.max()),
        cycles_per_sample=float(cycles.sum() / count),
        latency_per_sample_us=float(cycles.sum() / count / config.clock_mhz),
        clock_mhz=config.clock_mhz, build=build.to_dict())

    # 4. synthesize
    from delrec.hw.synth import synthesis_case  # records a design that does not fit, never raises

    synth = {}
    for device in config.devices:
        synth[device] = stages.run(f"synthesize {device}", synthesis_case, build, device,
                                   out / "synth" / device)

    # 5. learn delays online on the RTL learning core, a few samples, bit-exact
    onchip = stages.run("learn on chip", _learn_on_chip, config, out, task, net, build) \
        if config.onchip_samples else None

    # 6. report
    figures = _figures(out, model, net, metrics, quant, cosim_summary, run, xs[0])
    if synth:
        figures.append(_area_latency(out, synth, cosim_summary, steps_per_sample))
    summary = dict(config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
                   train={k: metrics[k] for k in ("parameters", "test_accuracy", "best_test_accuracy",
                                                  "spikes_per_neuron_per_step")},
                   quantized=quant, cosim=cosim_summary, synth=synth, onchip=onchip,
                   stage_seconds=stages.times,
                   figures=[str(f.name) for f in figures], torch=torch.__version__)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_reports(out, summary, figures)
    return summary


def _learn_on_chip(config: DemoConfig, out: Path, task, net, build) -> dict:
    """The deployed network keeps learning on the learning core, a few samples, checked bit for bit.

    The very network the demo trained, quantized and co-simulated (``net``),
    with learning fractions added (the same forward values), learns its
    input delays (from zero), its recurrent delays and its readout every
    step on a learning build of the same size and queue.
    """
    from delrec.arith import LearningRates
    from delrec.build import CoreBuild
    from delrec.golden.online_fixed import LEARNING_SPEC, FixedOnlineNetwork, image_learning_config
    from delrec.sim.learning import LearningSample, cosimulate_learning
    from delrec.sim.online_learning import CHECKPOINT_RULE as rule

    image = net.with_fractions(LEARNING_SPEC)
    rule_net = FixedOnlineNetwork.from_image(
        image, image_learning_config(image, sigma=rule["sigma"], loss_start=rule["loss_start"]),
        LearningRates(lr_delay_shift=rule["lr_delay_shift"], lr_readout_shift=rule["lr_readout_shift"]),
        target=int(round(rule["target"] * image.meta.get("readout_scale", image.theta))))
    learning = CoreBuild(inputs=build.inputs, neurons=image.neurons, classes=build.classes, spec=image.spec,
                         lanes=build.lanes if image.neurons % build.lanes == 0 else 1, queue="history",
                         input_delays="axonal", learning="step", max_reach=rule_net.reach)
    train = task.split("train")
    samples = [LearningSample(x=np.asarray(train[n][0], np.int64), label=int(train[n][1]))
               for n in range(min(config.onchip_samples, len(train)))]
    result = cosimulate_learning(rule_net, samples, build=learning, stall=0.0, check_state=False,
                                 build_root=out / "sim", work_dir=out / "sim" / "onchip")
    f = image.spec.delay_frac_bits
    moved = np.concatenate([(result.golden.d_in - rule_net.d_in).abs().numpy().ravel(),
                            (result.golden.d_rec - rule_net.d_rec).abs().numpy().ravel()
                            if rule_net.d_rec is not None else np.zeros(0)])
    cycles = [c for run in result.cycles for c in run]
    return dict(samples=len(samples), bit_exact=True, build=learning.to_dict(), delays=int(moved.size),
                delays_changed=int((moved > 0).sum()), mean_delay_change_steps=float(moved.mean() / (1 << f)),
                largest_delay_change_steps=float(moved.max() / (1 << f)),
                readout_weights_changed=int((result.golden.w_out != rule_net.w_out).sum()),
                cycles_per_step_mean=float(np.mean(cycles)),
                train_accuracy_while_learning=float(np.mean(
                    [p == y for p, y in zip(result.predictions(), result.labels)])))


def _area_latency(out: Path, synth: dict, cosim: dict, steps: int) -> Path:
    """The synthesised builds on the area-latency plane (the sweep's plot)."""
    from delrec.sim.sweep import Workload, plot_area_latency

    build = cosim["build"]
    points = []
    for device, r in synth.items():
        if r.get("fmax_mhz") and r.get("lut"):
            points.append(dict(device=device, queue=build["queue"], neurons=build["neurons"],
                               lanes=build["lanes"], synthesis=r,
                               sample_latency_ms=cosim["cycles_per_sample"] / r["fmax_mhz"] / 1e3))
    path = out / "area_latency.png"
    plot_area_latency(points, path, Workload(steps=steps))
    return path


def _figures(out: Path, model, net, metrics, quant, cosim, run, x0) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = ["float", "fixed point", "RTL"]
    values = [quant["float_accuracy"], quant["fixed_accuracy"], cosim["rtl_accuracy"]]
    bars = ax.bar(names, [100 * v for v in values], color=["#4c72b0", "#dd8452", "#55a868"])
    ax.bar_label(bars, fmt="%.1f %%")
    ax.set(ylabel="test accuracy (%)", ylim=(0, 105),
           title=f"RTL on {cosim['samples']} samples, float/fixed on {quant['samples']}")
    paths.append(_save(fig, out / "accuracy.png"))

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(net.delays.reshape(-1), bins=np.arange(net.spec.depth + 1) - 0.5, color="#4c72b0")
    ax.set(xlabel="integer delay (steps)", ylabel="neurons", title="learned recurrent delays")
    paths.append(_save(fig, out / "delays.png"))

    golden = run.golden[0].spikes[:, 0]
    rtl = run.spikes[0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    for ax, raster, title in ((axes[0], golden, "golden model"), (axes[1], rtl, "RTL (Verilator)")):
        t, i = np.nonzero(raster)
        ax.scatter(t, i, s=4, marker="|", color="k")
        ax.set(xlabel="step", title=f"{title}: {int(raster.sum())} spikes",
               xlim=(-0.5, raster.shape[0] - 0.5), ylim=(-0.5, raster.shape[1] - 0.5))
    axes[0].set_ylabel("neuron")
    paths.append(_save(fig, out / "rasters.png"))

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(run.step_cycles[0], color="#55a868", label="whole step")
    ax.plot(run.cycles[0], color="#c44e52", label="after the last input event")
    ax.set(xlabel="step", ylabel="cycles", title="RTL cycles per step (sample 0)")
    ax.legend()
    paths.append(_save(fig, out / "cycles.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _rows(summary: dict) -> tuple[list, list]:
    q, c = summary["quantized"], summary["cosim"]
    accuracy = [("float (integer delays)", f"{100 * q['float_accuracy']:.1f} %", f"{q['samples']} test samples"),
                ("fixed point, 8-bit weights", f"{100 * q['fixed_accuracy']:.1f} %",
                 f"same prediction as float on {100 * q['agreement']:.1f} %"),
                ("RTL core", f"{100 * c['rtl_accuracy']:.1f} %",
                 f"{c['samples']} samples; fixed point on the same: {100 * c['fixed_accuracy_same_samples']:.1f} %")]
    area = []
    for device, r in summary["synth"].items():
        fmax = r.get("fmax_mhz")
        latency = f"{c['cycles_per_sample'] / fmax:.0f}" if fmax else "?"
        status = r.get("status", "?").replace("_", " ")
        if r.get("over_capacity"):
            status += " (" + ", ".join(f"{bel} {use['used']} of {use['available']}"
                                       for bel, use in r["over_capacity"].items()) + ")"
        area.append((device, status, r.get("lut", "?"), r.get("ff", "?"), r.get("bram", "?"),
                     r.get("spram", "?"), r.get("dsp", "?"), fmax if fmax else "-", latency if fmax else "-"))
    return accuracy, area


def _onchip_text(o: dict | None) -> str:
    if not o:
        return ""
    b = o["build"]
    return (f"The deployed network kept learning on the learning core ({b['inputs']} inputs, "
            f"{b['neurons']} neurons, {b['classes']} classes, axonal input and recurrent delays): "
            f"{o['samples']} training samples, every step, bit-exact with the fixed-point three-factor "
            f"rule (every spike and score, and every trace, learning signal, delay and readout weight "
            f"after every step): {o['delays_changed']} of {o['delays']} delays changed (mean "
            f"{o['mean_delay_change_steps']:.3f}, largest {o['largest_delay_change_steps']:.2f} steps), "
            f"{o['readout_weights_changed']} readout weights changed; {o['cycles_per_step_mean']:.0f} "
            f"cycles per learning step. More epochs: `delrec learn-on-core --from "
            f"runs/demo/train/checkpoint.pt`.")


def _write_reports(out: Path, summary: dict, figures: list[Path]) -> None:
    c = summary["cosim"]
    accuracy, area = _rows(summary)
    verdict = (f"bit-exact: every spike and every final score of {c['samples']} samples, and every "
               f"membrane, readout value and score at every step of {c['state_checked_samples']} "
               f"samples under random stalls, equal to the fixed-point golden model")
    build = c["build"]
    latency = (f"{c['cycles_per_step_mean']:.0f} cycles per step on average (max "
               f"{c['cycles_per_step_max']}), from a step's first input event to its last spike, "
               f"{c['cycles_per_sample']:.0f} cycles per sample: {c['latency_per_sample_us']:.0f} us at "
               f"{c['clock_mhz']:.0f} MHz ({build['queue']} queue, P = {build['lanes']})")
    md = ["# delrec demo report", "", f"Task `{summary['config']['task']}`, DelRec with "
          f"{summary['train']['parameters']:,} parameters.", "", "## Accuracy", "",
          "| model | test accuracy | note |", "|---|---|---|"]
    md += [f"| {a} | {b} | {n} |" for a, b, n in accuracy]
    md += ["", f"**Verdict:** {verdict}.", "", f"**Latency:** {latency}.", ""]
    if area:
        md += ["## Area and fmax", "", "| device | status | LUT | FF | block RAM | SPRAM | DSP | fmax (MHz) | "
               "latency per sample at fmax (us) |", "|---|---|---|---|---|---|---|---|---|"]
        md += ["| " + " | ".join(str(v) for v in row) + " |" for row in area]
        md += [""]
    onchip = _onchip_text(summary.get("onchip"))
    if onchip:
        md += ["## On-chip delay learning", "", onchip, ""]
    md += ["## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures]
    md += ["", "Stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in summary["stage_seconds"].items())]
    (out / "report.md").write_text("\n".join(md) + "\n")

    def table(header, rows):
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                       for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    parts = [f"<h1>delrec demo report</h1><p>Task <code>{html.escape(summary['config']['task'])}</code>, "
             f"DelRec with {summary['train']['parameters']:,} parameters.</p>",
             "<h2>Accuracy</h2>", table(["model", "test accuracy", "note"], accuracy),
             f"<p><b>Verdict:</b> {html.escape(verdict)}.</p>",
             f"<p><b>Latency:</b> {html.escape(latency)}.</p>"]
    if area:
        parts += ["<h2>Area and fmax</h2>",
                  table(["device", "status", "LUT", "FF", "block RAM", "SPRAM", "DSP", "fmax (MHz)",
                         "latency per sample at fmax (us)"], area)]
    if onchip:
        parts += ["<h2>On-chip delay learning</h2>", f"<p>{html.escape(onchip)}</p>"]
    parts += ["<h2>Figures</h2>"] + [f'<figure><img src="{f.name}" alt="{f.stem}"><figcaption>'
                                     f"{f.stem}</figcaption></figure>" for f in figures]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px}"
             "img{max-width:100%}figure{display:inline-block;margin:0 1em 1em 0}")
    # once loaded, the page records how many of its figures decoded (read by the browser test)
    script = ("<script>window.addEventListener('load',function(){var i=document.images,n=0;"
              "for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}"
              "document.body.setAttribute('data-images-loaded',n+'/'+i.length);});</script>")
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>delrec demo report"
            f"</title><style>{style}</style></head><body>{''.join(parts)}{script}</body></html>\n")
    (out / "report.html").write_text(page)
