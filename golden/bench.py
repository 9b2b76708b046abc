"""Benchmark of the float DelRec recurrent layer against the public DelRec code.

Measures, at the SHD configuration of the DelRec paper (batch 32, T = 100, a
``Linear(140, 256)`` feeding a recurrent LIF layer of 256 neurons with axonal
recurrent delays uniform in [10, 30], tau = 1.05, threshold 1, hard reset with
detached reset, ATan(5) surrogate, no recurrent dropout):

* the time of one forward + backward iteration (median over ``iterations``
  after ``warmup`` untimed ones; the loss is ``sum(spikes * R)`` for a fixed
  random ``R`` and the backward pass goes through the input linear layer);
* the peak resident set size of the process, and the peak minus the RSS right
  after imports and setup.

Every (implementation, sigma, threads) case runs in a fresh subprocess
(``python -m delrec.golden.bench --worker SPEC``, printing one JSON line), so
that the memory peaks of different cases never mix.

The public implementation (github.com/alexmaxad/DelRec, layer
``src.recurrent_neurons.axonal_recdel`` on spikingjelly 0.0.0.0.14) is never
imported by this package: it is loaded at run time, in the worker only, from a
checkout whose path the user gives (``--delrec-path``). Without a path only
our implementation is measured.

With a checkout, a cross-check builds both layers with the same weights and
delays and feeds them the same input current: spikes must be identical and the
gradients of the input current, the recurrent weights and the delays must
agree to rounding (reported in float32 and float64).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["SHD_CONFIG", "TARGETS", "run_benchmark", "add_arguments", "main_from_args", "main"]

#: Sizes and neuron constants of the SHD configuration.
SHD_CONFIG = {
    "batch": 32,
    "steps": 100,
    "inputs": 140,
    "neurons": 256,
    "tau": 1.05,
    "threshold": 1.0,
    "v_reset": 0.0,
    "detach_reset": True,
    "surrogate": "atan",
    "alpha": 5.0,
    "decay_input": False,
    "delay_range": [10.0, 30.0],
    "recurrent_dropout": 0.0,
    "input_rate": 0.1,
    # std of the input current of a neuron (input weights ~ N(0, gain^2 / (inputs * rate)))
    "input_gain": 1.0,
}

#: ours / public ratios to reach.
TARGETS = {"time_ratio_max": 0.2, "peak_rss_ratio_max": 0.5}

_MB = 1024.0 * 1024.0


# --------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------

def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024 / _MB  # kB
    except OSError:
        pass
    return None


def _current_rss_mb() -> float:
    rss = _proc_status_mb("VmRSS")
    if rss is not None:
        return rss
    return _peak_rss_mb()


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _peak_rss_mb() -> float:
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / _MB if sys.platform == "darwin" else maxrss * 1024 / _MB


# --------------------------------------------------------------------------
# worker side: models and measurements
# --------------------------------------------------------------------------

def _shared_tensors(cfg: dict, seed: int, dtype):
    """Input linear weights, recurrent weights, delays, input spikes and loss weights."""
    import torch

    T, B, C, N = cfg["steps"], cfg["batch"], cfg["inputs"], cfg["neurons"]
    g = torch.Generator().manual_seed(seed)
    lin_w = torch.randn(N, C, generator=g) * (cfg["input_gain"] / math.sqrt(C * cfg["input_rate"]))
    lin_b = torch.zeros(N)
    weight = torch.nn.init.orthogonal_(torch.empty(N, N), generator=g)
    low, high = cfg["delay_range"]
    delays = torch.rand(N, generator=g) * (high - low) + low
    x = (torch.rand(T, B, C, generator=g) < cfg["input_rate"]).float()
    loss_weights = torch.randn(T, B, N, generator=g)
    return {k: v.to(dtype) for k, v in dict(lin_w=lin_w, lin_b=lin_b, weight=weight, delays=delays,
                                             x=x, loss_weights=loss_weights).items()}


def _build_ours(cfg: dict, sigma: float):
    from .layers import RecurrentLIF
    from .lif import ATan, LIFParameters

    if cfg["surrogate"] != "atan" or cfg["v_reset"] != 0.0 or cfg["decay_input"]:
        raise ValueError("The benchmark only covers the SHD neuron (ATan, hard reset to 0, no input decay)")
    p = LIFParameters(tau=cfg["tau"], threshold=cfg["threshold"], reset="hard",
                      detach_reset=cfg["detach_reset"], surrogate=ATan(cfg["alpha"]))
    layer = RecurrentLIF(cfg["neurons"], p, delays="axonal", delay_init=tuple(cfg["delay_range"]),
                         sigma=sigma, recurrent_dropout=cfg["recurrent_dropout"])
    return layer


def _load_public(path: str):
    """Import the public layer from a checkout (worker only)."""
    if path not in sys.path:
        sys.path.insert(0, path)
    from spikingjelly.activation_based import functional, neuron, surrogate  # noqa: F401
    from src.recurrent_neurons import axonal_recdel

    return axonal_recdel, neuron, surrogate, functional


def _build_public(cfg: dict, sigma: float, path: str):
    from types import SimpleNamespace

    axonal_recdel, neuron, surrogate, functional = _load_public(path)
    low, high = cfg["delay_range"]
    config = SimpleNamespace(
        step_mode="m", store_v_seq=False, tau=cfg["tau"], decay_input=cfg["decay_input"],
        v_reset=cfg["v_reset"], v_threshold=cfg["threshold"],
        surrogate_function=surrogate.ATan(alpha=cfg["alpha"]), detach_reset=cfg["detach_reset"],
        backend="torch", sigma_init=float(sigma), recurrent_dropout_rate=cfg["recurrent_dropout"],
        use_sig_p=False, rec_delay_init_gain=1.0, init_rec_delay="uniform",
        init_recdel_offset=low, max_rec_delay=high, delay_std_init=15.0, sigma_decay=0.95,
        epochs=150)
    layer = axonal_recdel(config, cfg["neurons"], neuron_module=neuron.LIFNode)
    return layer, functional.reset_net


class _Model:
    """Input linear + recurrent layer of one implementation, with shared parameters."""

    def __init__(self, impl: str, cfg: dict, sigma: float, public_path: str | None, shared: dict):
        import torch

        dtype = shared["weight"].dtype
        self.impl = impl
        self.linear = torch.nn.Linear(cfg["inputs"], cfg["neurons"]).to(dtype)
        with torch.no_grad():
            self.linear.weight.copy_(shared["lin_w"])
            self.linear.bias.copy_(shared["lin_b"])
        if impl == "ours":
            # convert before setting sigma: the sigma buffer takes the module dtype
            self.layer = _build_ours(cfg, sigma).to(dtype)
            self.reset = None
            with torch.no_grad():
                self.layer.weight.copy_(shared["weight"])
                self.layer.delays.delay.copy_(shared["delays"])
                self.layer.delays.set_sigma(sigma)
        elif impl == "public":
            if not public_path:
                raise ValueError("The public implementation needs the path of a DelRec checkout")
            self.layer, self.reset = _build_public(cfg, sigma, public_path)
            self.layer.to(dtype)
            with torch.no_grad():
                # their recurrent_weights[i, o]: current into i from the spike of o, X = W @ y
                self.layer.recurrent_weights.copy_(shared["weight"])
                self.layer.recurrent_delays.copy_(shared["delays"])
            self.layer.sigma = float(sigma)
        else:
            raise ValueError(f"Implementation must be 'ours' or 'public', not {impl!r}")
        self.linear.train()
        self.layer.train()

    def parameters(self):
        return list(self.linear.parameters()) + list(self.layer.parameters())

    def weight(self):
        return self.layer.weight if self.impl == "ours" else self.layer.recurrent_weights

    def delays(self):
        return self.layer.delays.delay if self.impl == "ours" else self.layer.recurrent_delays

    def run_layer(self, current):
        if self.reset is not None:
            self.reset(self.layer)
        return self.layer(current)

    def forward(self, x):
        return self.run_layer(self.linear(x))


def _worker_time(spec: dict) -> dict:
    import torch

    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    cfg, sigma = spec["config"], float(spec["sigma"])
    if spec["impl"] == "public":
        _load_public(spec["public_path"])  # imports count as setup
    rss_imports = _current_rss_mb()
    torch.manual_seed(spec["seed"])
    shared = _shared_tensors(cfg, spec["seed"], torch.float32)
    model = _Model(spec["impl"], cfg, sigma, spec.get("public_path"), shared)
    x, loss_weights = shared["x"], shared["loss_weights"]
    params = model.parameters()
    rss_setup = _current_rss_mb()

    load_start = _loadavg()
    times, cpu_times, spike_rate = [], [], None
    for i in range(spec["warmup"] + spec["iterations"]):
        cpu_start = time.process_time()
        start = time.perf_counter()
        for q in params:
            q.grad = None
        spikes = model.forward(x)
        loss = (spikes * loss_weights).sum()
        loss.backward()
        elapsed = time.perf_counter() - start
        cpu_elapsed = time.process_time() - cpu_start
        if i >= spec["warmup"]:
            times.append(elapsed * 1e3)
            cpu_times.append(cpu_elapsed * 1e3)
        spike_rate = float(spikes.detach().mean())
        del spikes, loss
    finite = all(bool(torch.isfinite(q.grad).all()) for q in params if q.grad is not None)
    peak = _peak_rss_mb()
    return {
        "implementation": spec["impl"],
        "sigma": sigma,
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "iterations": spec["iterations"],
        "warmup": spec["warmup"],
        "ms_per_iter": statistics.median(times),
        "ms_per_iter_min": min(times),
        "ms_per_iter_max": max(times),
        "ms_all": times,
        # CPU time of the process (all threads), less disturbed by other processes than wall time
        "cpu_ms_per_iter": statistics.median(cpu_times),
        "rss_after_imports_mb": rss_imports,
        "rss_after_setup_mb": rss_setup,
        "peak_rss_mb": peak,
        "peak_minus_setup_mb": peak - rss_setup,
        "spike_rate": spike_rate,
        "grads_finite": finite,
        # 1-minute load average of the machine before and after (other processes disturb timings)
        "loadavg_1min": [load_start, _loadavg()],
    }


def _compare(a, b) -> dict:
    """Differences of ``a`` (ours) from ``b`` (public)."""
    diff = (a - b).abs()
    scale = float(b.abs().max())
    max_abs = float(diff.max())
    rel = (diff / b.abs().clamp(min=1e-3 * max(scale, 1e-30))).max()
    return {
        "max_abs_diff": max_abs,
        "max_abs_public": scale,
        # max |a - b| / max |b|
        "max_rel_diff": max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf),
        # max over entries of |a - b| / max(|b|, 1e-3 max |b|)
        "max_elementwise_rel_diff": float(rel),
    }


def _worker_crosscheck(spec: dict) -> dict:
    import torch

    torch.set_num_threads(int(spec["threads"]))
    cfg, sigma = spec["config"], float(spec["sigma"])
    out = {"sigma": sigma}
    for name, dtype, tol in (("float32", torch.float32, 1e-4), ("float64", torch.float64, 1e-10)):
        shared = _shared_tensors(cfg, spec["seed"], dtype)
        grads, spikes = {}, {}
        for impl in ("ours", "public"):
            model = _Model(impl, cfg, sigma, spec["public_path"], shared)
            with torch.no_grad():
                current = model.linear(shared["x"])
            current.requires_grad_(True)
            s = model.run_layer(current)
            (s * shared["loss_weights"]).sum().backward()
            spikes[impl] = s.detach()
            grads[impl] = {"current": current.grad, "weight": model.weight().grad,
                           "delays": model.delays().grad}
        mismatch = spikes["ours"] != spikes["public"]
        n_mismatch = int(mismatch.sum())
        first = int(mismatch.any(-1).any(-1).nonzero()[0]) if n_mismatch else None
        res = {
            "spikes_equal": n_mismatch == 0,
            "spike_mismatches": n_mismatch,
            "spike_count": int(spikes["public"].sum()),
            "spike_rate": float(spikes["public"].mean()),
            "first_mismatch_step": first,
            "grads": {k: _compare(grads["ours"][k], grads["public"][k]) for k in grads["ours"]},
            "tolerance_rel": tol,
        }
        res["grads_agree"] = all(g["max_rel_diff"] <= tol for g in res["grads"].values())
        out[name] = res
    out["passed"] = all(out[k]["spikes_equal"] and out[k]["grads_agree"] for k in ("float32", "float64"))
    return out


def _worker(spec: dict) -> dict:
    if spec["mode"] == "time":
        return _worker_time(spec)
    if spec["mode"] == "crosscheck":
        return _worker_crosscheck(spec)
    raise ValueError(f"Unknown worker mode {spec['mode']!r}")


# --------------------------------------------------------------------------
# driver side
# --------------------------------------------------------------------------

def _spawn(spec: dict, timeout: float | None, omp_wait_policy: str | None = None) -> dict:
    env = dict(os.environ)
    threads = str(spec["threads"])
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    if omp_wait_policy is not None:
        env["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
    cmd = [sys.executable, "-m", "delrec.golden.bench", "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"Benchmark worker {spec['mode']} {spec.get('impl', '')} sigma={spec['sigma']} "
                           f"threads={spec['threads']} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def _machine_info() -> dict:
    import torch

    info = {
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": None,
        "memory_gb": None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_parallel_backend": None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    for line in torch.__config__.parallel_info().splitlines():
        if line.startswith("ATen parallel backend"):
            info["torch_parallel_backend"] = line.split(":", 1)[1].strip()
    return info


def _public_info(path: str) -> dict:
    info = {"path": str(Path(path).resolve()), "commit": None, "spikingjelly": None}
    try:
        info["commit"] = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True,
                                        text=True, check=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version

        info["spikingjelly"] = version("spikingjelly")
    except Exception:  # not installed: the workers will say so
        pass
    return info


def _round(obj, digits: int = 6):
    """Floats to ``digits`` significant digits, for a readable JSON file."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v, digits) for v in obj]
    return obj


def _table(result: dict) -> str:
    rows = [("impl", "sigma", "thr", "ms/iter", "min ms", "cpu ms", "peak MB", "peak-setup MB", "spike rate",
             "max load")]
    for c in result["cases"]:
        loads = [v for v in c["loadavg_1min"] if v is not None]
        load = f"{max(loads):.1f}" if loads else "?"
        rows.append((c["implementation"], f"{c['sigma']:g}", str(c["threads"]), f"{c['ms_per_iter']:.1f}",
                     f"{c['ms_per_iter_min']:.1f}", f"{c['cpu_ms_per_iter']:.1f}", f"{c['peak_rss_mb']:.0f}", f"{c['peak_minus_setup_mb']:.0f}", f"{c['spike_rate']:.3f}",
                     load))
    lines = _format_rows(rows)
    if result["comparisons"]:
        rows = [("sigma", "thr", "time ratio", "min ratio", "cpu ratio", "peak ratio", "delta ratio",
                 "time ok", "mem ok")]
        for c in result["comparisons"]:
            rows.append((f"{c['sigma']:g}", str(c["threads"]), f"{c['time_ratio']:.4f}",
                         f"{c['time_ratio_min']:.4f}", f"{c['cpu_time_ratio']:.4f}",
                         f"{c['peak_rss_ratio']:.3f}", f"{c['peak_minus_setup_ratio']:.4f}",
                         "yes" if c["time_target_met"] else "NO",
                         "yes" if c["peak_rss_target_met"] else "NO"))
        lines += [""] + _format_rows(rows)
        lines.append(f"targets: time ratio <= {TARGETS['time_ratio_max']}, "
                     f"peak RSS ratio <= {TARGETS['peak_rss_ratio_max']}; "
                     f"all met: {result['all_targets_met']}")
    for c in result.get("crosscheck") or []:
        parts = []
        for name in ("float32", "float64"):
            r = c[name]
            g = ", ".join(f"{k} {v['max_rel_diff']:.1e}" for k, v in r["grads"].items())
            parts.append(f"{name}: spike mismatches {r['spike_mismatches']}/{r['spike_count']}, rel grad diff {g}")
        lines.append(f"cross-check sigma={c['sigma']:g}: " + "; ".join(parts))
    return "\n".join(lines)


def _format_rows(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows]


def _merge_repeats(runs: list) -> list:
    """One result per (implementation, sigma, threads): least disturbed time, and the memory
    figures of the run with the largest peak (all from that one run, so they add up)."""
    groups: dict = {}
    for run in runs:
        groups.setdefault((run["implementation"], run["sigma"], run["threads"]), []).append(run)
    cases = []
    for group in groups.values():
        best = dict(min(group, key=lambda r: r["ms_per_iter"]))
        worst_mem = max(group, key=lambda r: r["peak_rss_mb"])
        best["cpu_ms_per_iter"] = min(r["cpu_ms_per_iter"] for r in group)
        for key in ("rss_after_imports_mb", "rss_after_setup_mb", "peak_rss_mb", "peak_minus_setup_mb"):
            best[key] = worst_mem[key]
        best["grads_finite"] = all(r["grads_finite"] for r in group)
        best["repeats"] = len(group)
        best["repeat_ms_per_iter"] = [r["ms_per_iter"] for r in group]
        best["repeat_peak_rss_mb"] = [r["peak_rss_mb"] for r in group]
        best["loadavg_1min"] = [v for r in group for v in r["loadavg_1min"]]
        cases.append(best)
    return cases


def run_benchmark(delrec_path: str | None, threads=(1, 2), sigmas=(10.0, 0.1), iterations: int = 10,
                  out=None, *, warmup: int = 2, batch: int | None = None, steps: int | None = None,
                  inputs: int | None = None, neurons: int | None = None, crosscheck: bool = True,
                  seed: int = 0, repeats: int = 1, omp_wait_policy: str | None = None,
                  progress: bool = True, verbose: bool = True,
                  timeout: float | None = 1800.0) -> dict:
    """Time and memory of our recurrent DelRec layer, and of the public one if ``delrec_path`` is given.

    Parameters
    ----------
    delrec_path : str or None
        Path of a checkout of github.com/alexmaxad/DelRec (needs spikingjelly
        0.0.0.0.14 installed); None measures only our implementation.
    threads, sigmas : sequences
        Every combination is one case per implementation.
    iterations, warmup : int
        Timed and untimed forward + backward iterations per case.
    out : path or None
        Write the JSON result there.
    batch, steps, inputs, neurons : int or None
        Override the SHD sizes (for quick tests).
    crosscheck : bool
        With a checkout, compare spikes and gradients of both layers.
    repeats : int
        Run every case this many times, each in a fresh subprocess, the
        implementations interleaved; a case reports the smallest of the
        medians (the run least disturbed by other processes) and the largest
        peak RSS.
    omp_wait_policy : {"active", "passive"} or None
        ``OMP_WAIT_POLICY`` of the workers (both implementations); None keeps
        the environment's. On a machine shared with other busy processes,
        spinning OpenMP threads wait for descheduled ones and multi-threaded
        timings blow up; ``"passive"`` makes idle threads sleep instead.

    Returns
    -------
    dict
        The JSON-serialisable result: ``machine``, ``config``, ``cases``,
        ``comparisons`` (ours / public), ``targets``, ``all_targets_met``,
        ``crosscheck``.
    """
    if iterations < 1 or warmup < 0 or repeats < 1:
        raise ValueError(f"Need iterations >= 1, warmup >= 0 and repeats >= 1, not "
                         f"{iterations!r}, {warmup!r}, {repeats!r}")
    if omp_wait_policy is not None and omp_wait_policy.lower() not in ("active", "passive"):
        raise ValueError(f"OMP wait policy must be 'active' or 'passive', not {omp_wait_policy!r}")
    threads = [int(t) for t in threads]
    sigmas = [float(s) for s in sigmas]
    if not threads or min(threads) < 1 or not sigmas or min(sigmas) < 0:
        raise ValueError(f"Need positive thread counts and non-negative sigmas, not {threads!r}, {sigmas!r}")
    if delrec_path is not None:
        delrec_path = str(Path(delrec_path).resolve())
        if not (Path(delrec_path) / "src" / "recurrent_neurons.py").is_file():
            raise ValueError(f"{delrec_path} is not a DelRec checkout (no src/recurrent_neurons.py)")
    cfg = dict(SHD_CONFIG)
    for key, value in (("batch", batch), ("steps", steps), ("inputs", inputs), ("neurons", neurons)):
        if value is not None:
            if int(value) < 1:
                raise ValueError(f"{key} must be positive, not {value!r}")
            cfg[key] = int(value)

    impls = ["ours"] + (["public"] if delrec_path else [])
    specs = [{"mode": "time", "impl": impl, "sigma": s, "threads": t, "config": cfg, "seed": seed,
              "iterations": int(iterations), "warmup": int(warmup), "public_path": delrec_path}
             for _ in range(int(repeats)) for s in sigmas for t in threads for impl in impls]
    checks = []
    if delrec_path and crosscheck:
        checks = [{"mode": "crosscheck", "sigma": s, "threads": threads[0], "config": cfg, "seed": seed,
                   "public_path": delrec_path} for s in sigmas]

    from tqdm import tqdm

    load_start = _loadavg()

    runs, cross = [], []
    with tqdm(total=len(specs) + len(checks), desc="bench golden", unit="case", disable=not progress,
              file=sys.stderr) as bar:
        for spec in specs:
            bar.set_postfix_str(f"{spec['impl']} sigma={spec['sigma']:g} threads={spec['threads']}")
            runs.append(_spawn(spec, timeout, omp_wait_policy))
            bar.update()
        for spec in checks:
            bar.set_postfix_str(f"cross-check sigma={spec['sigma']:g}")
            cross.append(_spawn(spec, timeout, omp_wait_policy))
            bar.update()

    cases = _merge_repeats(runs)
    comparisons = []
    if delrec_path:
        by_key = {(c["implementation"], c["sigma"], c["threads"]): c for c in cases}
        for s in sigmas:
            for t in threads:
                o, p = by_key[("ours", s, t)], by_key[("public", s, t)]
                time_ratio = o["ms_per_iter"] / p["ms_per_iter"]
                mem_ratio = o["peak_rss_mb"] / p["peak_rss_mb"]
                delta_ratio = (o["peak_minus_setup_mb"] / p["peak_minus_setup_mb"]
                               if p["peak_minus_setup_mb"] > 0 else None)
                comparisons.append({
                    "sigma": s, "threads": t, "time_ratio": time_ratio,
                    "time_ratio_min": o["ms_per_iter_min"] / p["ms_per_iter_min"],
                    "cpu_time_ratio": o["cpu_ms_per_iter"] / p["cpu_ms_per_iter"],
                    "peak_rss_ratio": mem_ratio,
                    "peak_minus_setup_ratio": delta_ratio, "speedup": 1.0 / time_ratio,
                    "time_target_met": time_ratio <= TARGETS["time_ratio_max"],
                    "peak_rss_target_met": mem_ratio <= TARGETS["peak_rss_ratio_max"],
                })

    result = {
        "benchmark": "delrec golden: recurrent axonal DelRec layer, forward + backward",
        "machine": {**_machine_info(), "loadavg_1min": [load_start, _loadavg()]},
        "config": {**cfg, "sigmas": sigmas, "threads": threads, "iterations": int(iterations),
                   "warmup": int(warmup), "seed": seed, "repeats": int(repeats),
                   "omp_wait_policy": omp_wait_policy or os.environ.get("OMP_WAIT_POLICY"),
                   "loss": "sum(spikes * R), R ~ N(0,1) fixed; backward through the input linear",
                   "input": f"Bernoulli({cfg['input_rate']}) spikes [T, B, inputs]",
                   "memory": "peak RSS (VmHWM) of a fresh subprocess per case"},
        "public": _public_info(delrec_path) if delrec_path else None,
        "targets": dict(TARGETS),
        "cases": cases,
        "comparisons": comparisons,
        "all_targets_met": (all(c["time_target_met"] and c["peak_rss_target_met"] for c in comparisons)
                            if comparisons else None),
        "crosscheck": cross if delrec_path and crosscheck else None,
    }
    if verbose:
        print(_table(result), file=sys.stderr)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_round(result), indent=2) + "\n")
    return result


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``delrec bench golden``."""
    parser.add_argument("--delrec-path", default=None, metavar="PATH",
                        help="checkout of github.com/alexmaxad/DelRec to compare with (needs spikingjelly "
                             "0.0.0.0.14); without it only our layer is measured")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="N",
                        help="torch thread counts (default: 1 2)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[10.0, 0.1], metavar="S",
                        help="spread parameters (default: 10 0.1)")
    parser.add_argument("--iterations", type=int, default=10, metavar="N",
                        help="timed forward+backward iterations per case (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, metavar="N",
                        help="untimed iterations before (default: 2)")
    parser.add_argument("--repeats", type=int, default=1, metavar="R",
                        help="fresh-subprocess runs per case; the least disturbed one is reported (default: 1)")
    parser.add_argument("--omp-wait-policy", choices=("active", "passive"), default=None,
                        help="OMP_WAIT_POLICY of the workers; 'passive' on a machine shared with other "
                             "busy processes (default: the environment's)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="write the JSON result there (default: print it to stdout)")
    for name in ("batch", "steps", "inputs", "neurons"):
        parser.add_argument(f"--{name}", type=int, default=None, metavar="N",
                            help=f"override the SHD {name} ({SHD_CONFIG[name]})")
    parser.add_argument("--no-crosscheck", dest="crosscheck", action="store_false",
                        help="skip the spike / gradient comparison with the public layer")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``delrec bench golden`` from parsed arguments; 0 on success, 1 on a failed run."""
    try:
        result = run_benchmark(args.delrec_path, threads=args.threads, sigmas=args.sigmas,
                               iterations=args.iterations, out=args.out, warmup=args.warmup,
                               repeats=args.repeats, omp_wait_policy=args.omp_wait_policy,
                               batch=args.batch, steps=args.steps, inputs=args.inputs,
                               neurons=args.neurons, crosscheck=args.crosscheck, progress=args.progress)
    except (ValueError, RuntimeError, subprocess.TimeoutExpired) as err:
        print(f"delrec bench golden: {err}", file=sys.stderr)
        return 1
    if args.out is None:
        print(json.dumps(_round(result), indent=2))
    else:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "--worker":
        if len(argv) != 2:
            print("usage: python -m delrec.golden.bench --worker JSON_SPEC", file=sys.stderr)
            return 2
        print(json.dumps(_worker(json.loads(argv[1]))), flush=True)
        return 0
    parser = add_arguments(argparse.ArgumentParser(prog="python -m delrec.golden.bench",
                                                   description=__doc__.split("\n\n")[0]))
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
