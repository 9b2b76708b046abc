"""Model comparisons over seeds: the accuracy tables of the README.

``delrec bench accuracy --task delayed-xor --models delrec recurrent --seeds 0 1 2``
trains every (model, seed) pair, in parallel processes (one thread each), and
writes per-run metrics and mean / standard deviation per model to JSON.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from dataclasses import asdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm.auto import tqdm

from delrec.settings import key_value

from .network import MODEL_KINDS, ModelConfig
from .online import OnlineConfig
from .online_training import OnlineTrainConfig, make_online_configs, train_online
from .tasks.base import load_task
from .training import TrainConfig, make_configs, train

# Variants of the online three-factor rule compared by ``--learning three-factor``.
ONLINE_VARIANTS = {
    "delays": {},                                        # weights and delays learned
    "weights-only": {"learn_delays": False},             # delays fixed at their random start
    "no-delays": {"input_delays": None},                 # weights learned, no delays at all
    "delays-fixed-point": {"arithmetic": "fixed"},       # the chip's integer rule
    "weights-only-fixed-point": {"arithmetic": "fixed", "learn_delays": False},
}

__all__ = ["compare_models", "add_arguments", "main_from_args"]


_KEEP = ("model", "seed", "parameters", "train_accuracy", "val_accuracy", "test_accuracy",
         "best_epoch", "best_val_accuracy", "best_test_accuracy", "spikes_per_neuron_per_step")


def _summarise_run(metrics: dict, out) -> dict:
    result = {k: metrics[k] for k in _KEEP}
    result["seconds"] = sum(h["seconds"] for h in metrics["history"])
    result["out"] = str(out)
    return result


def _run_one(job: dict) -> dict:
    torch.set_num_threads(1)
    if job.get("learning") == "three-factor":
        metrics = train_online(OnlineConfig.from_dict(job["model_config"]),
                               OnlineTrainConfig.from_dict(job["train_config"]), job["out"],
                               progress=False)
        return dict(_summarise_run(metrics, job["out"]), model=job["variant"])
    model_config = ModelConfig.from_dict(job["model_config"])
    config = TrainConfig.from_dict(job["train_config"])
    metrics = train(model_config, config, job["out"], progress=False)
    return _summarise_run(metrics, job["out"])


def _finished(job: dict) -> dict | None:
    """The result of an identical run already in ``job['out']``, if any."""
    path = Path(job["out"]) / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    if job.get("learning") == "three-factor":
        same = metrics.get("online_config") == json.loads(json.dumps(job["model_config"])) and \
            metrics.get("train_config") == json.loads(json.dumps(job["train_config"]))
        return dict(_summarise_run(metrics, job["out"]), model=job["variant"]) if same else None
    if metrics.get("model_config") != job["model_config"] or \
            metrics.get("train_config") != json.loads(json.dumps(job["train_config"])):
        return None
    return _summarise_run(metrics, job["out"])


def compare_models(task: str, models, seeds, out_dir, task_options: dict | None = None,
                   splits: dict | None = None, overrides: dict | None = None,
                   workers: int | None = None, progress: bool = True,
                   learning: str = "bptt") -> dict:
    """Train every model kind with every seed on every split of ``task``.

    ``splits`` maps a label to extra task options (e.g. ``{"held out: theo":
    {"test_speakers": ["theo"]}}``; default: one split with ``task_options``).
    ``overrides`` are model / training settings on top of the task defaults.
    Runs whose folder already holds the metrics of an identical run are
    reused, so an interrupted comparison resumes where it stopped. With
    ``learning="three-factor"`` the models are variants of the online rule
    (:data:`ONLINE_VARIANTS`).
    """
    known = MODEL_KINDS if learning == "bptt" else tuple(ONLINE_VARIANTS)
    for kind in models:
        if kind not in known:
            raise ValueError(f"Model must be one of {known} for {learning} learning, not {kind!r}")
    overrides = dict(overrides or {})
    out_dir = Path(out_dir)
    base_options = dict(task_options or {})
    splits = splits or {"default": {}}
    jobs = []
    for label, extra in splits.items():
        options = dict(base_options, **extra)
        spec = load_task(task, **options)
        tag = "".join(c if c.isalnum() else "-" for c in label)
        for kind in models:
            for seed in seeds:
                if learning == "three-factor":
                    net, config = make_online_configs(spec, dict(
                        overrides, **ONLINE_VARIANTS[kind], seed=seed, threads=1,
                        task_options=options))
                    jobs.append({"split": label, "learning": learning, "variant": kind,
                                 "model_config": net.to_dict(), "train_config": asdict(config),
                                 "out": str(out_dir / f"{task}-{tag}-online-{kind}-s{seed}")})
                    continue
                model_config, config = make_configs(spec, dict(
                    overrides, kind=kind, seed=seed, threads=1, task_options=options))
                jobs.append({"split": label, "model_config": model_config.to_dict(),
                             "train_config": asdict(config),
                             "out": str(out_dir / f"{task}-{tag}-{kind}-s{seed}")})
    runs, todo = [], []
    for job in jobs:
        done = _finished(job)
        if done:
            runs.append(dict(done, split=job["split"]))
        else:
            todo.append(job)
    if todo:
        workers = workers or min(len(todo), os.cpu_count() or 1)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_run_one, job): job for job in todo}
            for future in tqdm(as_completed(futures), total=len(futures), disable=not progress,
                               desc=f"{task}: {len(todo)} runs", file=sys.stderr):
                runs.append(dict(future.result(), split=futures[future]["split"]))
    order = {label: i for i, label in enumerate(splits)}
    runs.sort(key=lambda r: (order[r["split"]], list(models).index(r["model"]), r["seed"]))
    summary = {}
    for label in splits:
        summary[label] = {}
        for kind in models:
            mine = [r for r in runs if r["model"] == kind and r["split"] == label]
            acc = [r["test_accuracy"] for r in mine]
            summary[label][kind] = {
                "test_accuracy_mean": statistics.fmean(acc),
                "test_accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "test_accuracy_min": min(acc),
                "parameters": mine[0]["parameters"],
                "spikes_per_neuron_per_step_mean": statistics.fmean(
                    r["spikes_per_neuron_per_step"] for r in mine),
                "seeds": [r["seed"] for r in mine],
            }
    return {"task": task, "learning": learning, "task_options": base_options, "splits": splits,
            "overrides": overrides,
            "epochs": jobs[0]["train_config"]["epochs"],
            "machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                        "platform": platform.platform()},
            "summary": summary, "runs": runs}


def format_table(result: dict) -> str:
    """Markdown: one row per model, one column per split, mean ± std (min) over seeds."""
    labels = list(result["summary"])
    models = list(result["summary"][labels[0]])
    seeds = result["summary"][labels[0]][models[0]]["seeds"]
    lines = [f"| model (seeds {seeds}) | parameters | " + " | ".join(labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for kind in models:
        cells = []
        for label in labels:
            s = result["summary"][label][kind]
            cells.append(f"{100 * s['test_accuracy_mean']:.1f} ± {100 * s['test_accuracy_std']:.1f} "
                         f"(min {100 * s['test_accuracy_min']:.1f})")
        params = result["summary"][labels[0]][kind]["parameters"]
        lines.append(f"| {kind} | {params:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("--task", default="delayed-xor")
    parser.add_argument("--data", type=Path, help="data folder of the task")
    parser.add_argument("--task-option", action="append", type=key_value, default=[],
                        metavar="KEY=VALUE", help="task option, repeatable")
    parser.add_argument("--set", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                        help="model or training setting, repeatable (e.g. dropout=0.3)")
    parser.add_argument("--learning", choices=("bptt", "three-factor"), default="bptt",
                        help="BPTT model kinds, or variants of the online rule")
    parser.add_argument("--models", nargs="+", default=None,
                        choices=MODEL_KINDS + tuple(ONLINE_VARIANTS),
                        help="model kinds (bptt; default delrec recurrent) or online variants "
                             "(default delays weights-only no-delays)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="default: the task's")
    parser.add_argument("--hidden", type=int, nargs="+", help="default: the task's")
    parser.add_argument("--hold-out-each-speaker", action="store_true",
                        help="spoken digits: one split per speaker, held out as the test set")
    parser.add_argument("--hold-out", nargs="+", metavar="SPEAKER",
                        help="spoken digits: one split per named speaker, held out as the test "
                             "set (the splits of --hold-out-each-speaker, for these speakers)")
    parser.add_argument("--standard-split", action="store_true",
                        help="with --hold-out-each-speaker or --hold-out: also the standard split")
    parser.add_argument("--workers", type=int, help="parallel runs (default: CPU count)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/compare"),
                        help="run folders; identical finished runs there are reused")
    parser.add_argument("--out", type=Path, help="JSON result (default: stdout)")
    parser.add_argument("--no-progress", action="store_true")


def main_from_args(args) -> int:
    task_options = dict(args.task_option)
    if args.data is not None:
        task_options["data"] = str(args.data)
    splits = None
    if args.hold_out_each_speaker and args.hold_out:
        raise ValueError("Give --hold-out-each-speaker or --hold-out SPEAKER ..., not both")
    if args.hold_out_each_speaker or args.hold_out:
        if "data" not in task_options:
            option = "--hold-out" if args.hold_out else "--hold-out-each-speaker"
            raise ValueError(f"{option} needs --data")
        if args.hold_out:
            speakers = list(dict.fromkeys(args.hold_out))   # the task names unknown ones
        else:
            from .tasks.spoken import scan_recordings

            speakers = sorted({r.speaker for r in scan_recordings(task_options["data"])})
        splits = {"standard": {}} if args.standard_split else {}
        splits.update({f"held out: {s}": {"test_speakers": [s]} for s in speakers})
    overrides = dict(args.set)
    overrides.update({k: v for k, v in (("epochs", args.epochs), ("hidden", args.hidden))
                      if v is not None})
    models = args.models or (["delrec", "recurrent"] if args.learning == "bptt"
                             else ["delays", "weights-only", "no-delays"])
    result = compare_models(args.task, models, args.seeds, args.runs_dir,
                            task_options=task_options, splits=splits,
                            overrides={k: v for k, v in overrides.items() if v is not None},
                            workers=args.workers, progress=not args.no_progress,
                            learning=args.learning)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)
    print(format_table(result), file=sys.stderr)
    return 0
