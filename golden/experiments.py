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

from .network import MODEL_KINDS, ModelConfig
from .tasks.base import load_task
from .training import TrainConfig, make_configs, train

__all__ = ["compare_models", "add_arguments", "main_from_args"]


def _run_one(job: dict) -> dict:
    torch.set_num_threads(1)
    model_config = ModelConfig.from_dict(job["model_config"])
    config = TrainConfig.from_dict(job["train_config"])
    metrics = train(model_config, config, job["out"], progress=False)
    keep = ("model", "seed", "parameters", "train_accuracy", "val_accuracy", "test_accuracy",
            "best_epoch", "best_val_accuracy", "best_test_accuracy", "spikes_per_neuron_per_step")
    result = {k: metrics[k] for k in keep}
    result["seconds"] = sum(h["seconds"] for h in metrics["history"])
    result["out"] = str(job["out"])
    return result


def compare_models(task: str, models, seeds, out_dir, epochs: int | None = None,
                   hidden=None, task_options: dict | None = None, workers: int | None = None,
                   progress: bool = True) -> dict:
    """Train every model kind with every seed on ``task``; return the summary."""
    for kind in models:
        if kind not in MODEL_KINDS:
            raise ValueError(f"Model kind must be one of {MODEL_KINDS}, not {kind!r}")
    out_dir = Path(out_dir)
    task_options = dict(task_options or {})
    spec = load_task(task, **task_options)
    jobs = []
    for kind in models:
        for seed in seeds:
            model_config, config = make_configs(spec, dict(
                kind=kind, seed=seed, threads=1, task_options=task_options, epochs=epochs,
                hidden=list(hidden) if hidden else None))
            jobs.append({"model_config": model_config.to_dict(), "train_config": asdict(config),
                         "out": str(out_dir / f"{task}-{kind}-s{seed}")})
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    runs = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_run_one, job) for job in jobs]
        for future in tqdm(as_completed(futures), total=len(futures), disable=not progress,
                           desc=f"{task}: {len(models)} models x {len(seeds)} seeds", file=sys.stderr):
            runs.append(future.result())
    runs.sort(key=lambda r: (list(models).index(r["model"]), r["seed"]))
    summary = {}
    for kind in models:
        mine = [r for r in runs if r["model"] == kind]
        acc = [r["test_accuracy"] for r in mine]
        summary[kind] = {
            "test_accuracy_mean": statistics.fmean(acc),
            "test_accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "test_accuracy_min": min(acc),
            "parameters": mine[0]["parameters"],
            "spikes_per_neuron_per_step_mean": statistics.fmean(
                r["spikes_per_neuron_per_step"] for r in mine),
            "seeds": [r["seed"] for r in mine],
        }
    return {"task": task, "task_options": task_options, "epochs": jobs[0]["train_config"]["epochs"],
            "machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                        "platform": platform.platform()},
            "summary": summary, "runs": runs}


def format_table(result: dict) -> str:
    lines = [f"| model | test accuracy (mean ± std over seeds {result['summary'][next(iter(result['summary']))]['seeds']}) "
             f"| min | parameters | spikes/neuron/step |", "|---|---|---|---|---|"]
    for kind, s in result["summary"].items():
        lines.append(f"| {kind} | {100 * s['test_accuracy_mean']:.1f} ± {100 * s['test_accuracy_std']:.1f} % "
                     f"| {100 * s['test_accuracy_min']:.1f} % | {s['parameters']} "
                     f"| {s['spikes_per_neuron_per_step_mean']:.3f} |")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("--task", default="delayed-xor")
    parser.add_argument("--models", nargs="+", default=["delrec", "recurrent"], choices=MODEL_KINDS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="default: the task's")
    parser.add_argument("--hidden", type=int, nargs="+", help="default: the task's")
    parser.add_argument("--workers", type=int, help="parallel runs (default: CPU count)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/compare"))
    parser.add_argument("--out", type=Path, help="JSON result (default: stdout)")
    parser.add_argument("--no-progress", action="store_true")


def main_from_args(args) -> int:
    result = compare_models(args.task, args.models, args.seeds, args.runs_dir, epochs=args.epochs,
                            hidden=args.hidden, workers=args.workers, progress=not args.no_progress)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)
    print(format_table(result), file=sys.stderr)
    return 0
