"""Cost and faithfulness of ``delrec.golden.tasks.cochlea`` (the SHD cochlea chain) vs lauscher.

Measures, and writes to ``benchmarks/cochlea.json``:

* fast mode: CPU seconds per recording over 20 FSDD recordings (synthetic
  speech-like audio if ``../shared/data/fsdd`` is absent), after the one-time
  transfer-function tables, whose cost is reported apart;
* fast mode: peak resident memory for a 3 s clip, in a fresh process;
* exact mode: CPU seconds for a 0.1 s clip;
* lauscher 1.0.1 itself (a test dependency): wall and CPU time and peak memory
  on a short clip, in a fresh process, and whether exact mode reproduces its
  spikes (number of spikes differing);
* fast mode against exact mode on a real recording: per-channel spike-count
  correlation, total-count ratio and the relative error of the rate map
  (channel groups x 10 ms bins), next to the same figures between two groups
  of fast runs (the sampling noise floor);
* with ``--reference FILE`` (another version of the module, e.g.
  ``git show HEAD~1:golden/tasks/cochlea.py > /tmp/cochlea_ref.py``): fast mode
  of both on the same recordings, interleaved, the best of ``--repeats`` runs
  per recording each, so that the two share the machine's load.

The machine's load average is recorded: CPU times here come from a shared 2-core
machine and vary with what else runs. Run: ``python benchmarks/cochlea.py``.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from delrec.golden.tasks import cochlea as co

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
OUT = Path(__file__).resolve().parent / "cochlea.json"

HWM = """
def _hwm_mb():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""


def _recordings(count: int):
    """``count`` FSDD recordings spread over digits and speakers, or synthetic stand-ins."""
    files = sorted(glob.glob(str(FSDD / "*.wav")))
    if files:
        import soundfile
        step = max(1, len(files) // count)
        out = []
        for f in files[::step][:count]:
            audio, rate = soundfile.read(f)
            out.append((Path(f).name, audio, rate))
        return out, "fsdd"
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        dur = 0.3 + 0.5 * rng.random()
        t = np.arange(int(dur * 8000)) / 8000
        f0 = 100 + 80 * rng.random()
        env = np.sin(np.pi * t / dur) ** 2
        x = env * sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 12)) \
            + 0.01 * rng.standard_normal(t.size)
        out.append((f"synthetic_{i}", x, 8000))
    return out, "synthetic"


def _call_overhead_us() -> float:
    """A calibration of the machine's state: microseconds per small numpy ufunc call."""
    a, b = np.random.rand(700), np.random.rand(700)
    best = 1e9
    for _ in range(5):
        t = time.process_time()
        for _ in range(20000):
            np.multiply(a, b, out=a)
        best = min(best, time.process_time() - t)
    return best / 20000 * 1e6


def bench_fast(count: int) -> dict:
    recs, source = _recordings(count)
    t = time.process_time()
    co._bm_tables(700)
    tables = time.process_time() - t
    co.cochlea_spikes(recs[0][1], recs[0][2], seed=0)      # warm the per-length plans path
    per, durs, spikes = [], [], []
    for name, audio, rate in recs:
        t = time.process_time()
        times, _ = co.cochlea_spikes(audio, rate, seed=1)
        per.append(time.process_time() - t)
        durs.append(audio.size / rate)
        spikes.append(int(times.size))
    per, durs = np.array(per), np.array(durs)
    return {"source": source, "recordings": len(recs), "mean_audio_s": round(float(durs.mean()), 4),
            "cpu_s_per_recording_mean": round(float(per.mean()), 4),
            "cpu_s_per_recording_median": round(float(np.median(per)), 4),
            "cpu_s_per_recording_max": round(float(per.max()), 4),
            "cpu_s_per_audio_s": round(float(per.sum() / durs.sum()), 4),
            "mean_spikes_per_recording": round(float(np.mean(spikes)), 1),
            "tables_cpu_s_once_per_process": round(tables, 3)}


def bench_reference(path: str, count: int, repeats: int) -> dict:
    """Fast mode of this module and of the module at ``path``, interleaved, best of ``repeats``."""
    spec = importlib.util.spec_from_file_location("cochlea_reference", path)
    ref = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = ref                  # (dataclasses look their module up there)
    spec.loader.exec_module(ref)
    recs, source = _recordings(count)
    versions = {"this": co, "reference": ref}
    for mod in versions.values():
        mod._bm_tables(700)
        mod.cochlea_spikes(recs[0][1], recs[0][2], seed=0)
    best = {name: np.full(len(recs), np.inf) for name in versions}
    for rep in range(repeats):
        for i, (_, audio, rate) in enumerate(recs):
            for name in (("this", "reference") if (rep + i) % 2 else ("reference", "this")):
                t = time.process_time()
                versions[name].cochlea_spikes(audio, rate, seed=1)
                best[name][i] = min(best[name][i], time.process_time() - t)
    return {"reference": path, "source": source, "recordings": len(recs), "repeats": repeats,
            "cpu_s_per_recording_mean": {k: round(float(v.mean()), 4) for k, v in best.items()},
            "ratio_this_to_reference": round(float(best["this"].sum() / best["reference"].sum()), 3),
            "note": "best of the repeats per recording; from the second repeat on, both reuse their "
                    "cached per-length interpolation plans"}


def bench_memory() -> dict:
    code = HWM + textwrap.dedent("""
        import json, time, numpy as np
        from delrec.golden.tasks.cochlea import cochlea_spikes
        base = _hwm_mb()
        rng = np.random.default_rng(0)
        t = np.arange(3 * 16000) / 16000
        x = np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.1 * rng.standard_normal(t.size)
        c = time.process_time()
        spikes = cochlea_spikes(x, 16000)
        print(json.dumps({"peak_rss_mb": round(_hwm_mb(), 1), "rss_after_imports_mb": round(base, 1),
                          "cpu_s_including_tables": round(time.process_time() - c, 2),
                          "spikes": int(spikes[0].size)}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["clip_s"] = 3.0
    return result


def _real_clip():
    files = sorted(glob.glob(str(FSDD / "3_theo_7.wav")))
    if files:
        import soundfile
        audio, rate = soundfile.read(files[0])
        return "3_theo_7.wav", co.resample_to_target(audio, rate)
    rng = np.random.default_rng(1)
    t = np.arange(int(0.25 * co.TARGET_RATE)) / co.TARGET_RATE
    x = np.sin(np.pi * t / 0.25) ** 2 * sum(np.sin(2 * np.pi * 130 * h * t) / h for h in range(1, 15))
    return "synthetic", x + 0.01 * rng.standard_normal(t.size)


def bench_exact() -> dict:
    name, x48 = _real_clip()
    clip = x48[int(0.07 * co.TARGET_RATE):int(0.17 * co.TARGET_RATE)]
    t = time.process_time()
    times, _ = co.cochlea_spikes(clip, co.TARGET_RATE, mode="exact", seed=0)
    return {"clip": f"{name} [0.07 s, 0.17 s)", "clip_s": 0.1,
            "cpu_s": round(time.process_time() - t, 2), "spikes": int(times.size)}


def bench_lauscher(duration: float) -> dict:
    name, x48 = _real_clip()
    clip = x48[int(0.1 * co.TARGET_RATE):int((0.1 + duration) * co.TARGET_RATE)]
    path = OUT.parent / "_lauscher_clip.npy"
    np.save(path, clip)
    code = HWM + textwrap.dedent(f"""
        import json, resource, time, numpy as np
        from lauscher.audiowaves import MonoAudioWave
        from lauscher.transformations.wave2spike import Wave2Spike
        x = np.load({str(path)!r})
        base = _hwm_mb()
        np.random.seed(0)
        wall, cpu = time.time(), time.process_time()
        spikes = MonoAudioWave(x, 48000).transform(Wave2Spike(num_channels=700))
        wall, cpu = time.time() - wall, time.process_time() - cpu
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(json.dumps({{"wall_s": round(wall, 2), "cpu_s_main": round(cpu, 2),
                          "cpu_s_workers": round(children.ru_utime + children.ru_stime, 2),
                          "peak_rss_mb_main": round(_hwm_mb(), 1), "rss_after_imports_mb": round(base, 1),
                          "peak_rss_mb_largest_worker": round(children.ru_maxrss / 1024, 1),
                          "times": spikes.spike_times.tolist(),
                          "labels": spikes.spike_labels.astype(int).tolist()}}))
    """)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    finally:
        path.unlink(missing_ok=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    theirs_t, theirs_c = np.array(result.pop("times")), np.array(result.pop("labels"), dtype=np.int64)
    t = time.process_time()
    ours_t, ours_c = co.cochlea_spikes(clip, co.TARGET_RATE, mode="exact", seed=0)
    exact_cpu = time.process_time() - t
    theirs = set(zip(np.round(theirs_t * 24000).astype(int).tolist(), theirs_c.tolist()))
    ours = set(zip(np.round(ours_t * 24000).astype(int).tolist(), ours_c.tolist()))
    result.update({"clip": f"{name} [0.1 s, {0.1 + duration:.3f} s)", "clip_s": duration, "channels": 700,
                   "lauscher_spikes": len(theirs), "exact_mode_spikes": len(ours),
                   "spikes_differing": len(theirs ^ ours), "exact_mode_cpu_s_same_clip": round(exact_cpu, 2)})
    return result


def _rate_map(runs, duration: float, groups: int = 35, bin_s: float = 0.01) -> np.ndarray:
    bins = int(np.ceil(duration / bin_s))
    total = np.zeros((groups, bins))
    for times, chans in runs:
        h, _, _ = np.histogram2d(chans, times, bins=[groups, bins], range=[[0, 700], [0, bins * bin_s]])
        total += h
    return total / len(runs)


def _compare(a_runs, b_runs, duration: float) -> dict:
    ca = np.mean([np.bincount(c, minlength=700) for _, c in a_runs], axis=0)
    cb = np.mean([np.bincount(c, minlength=700) for _, c in b_runs], axis=0)
    ra, rb = _rate_map(a_runs, duration), _rate_map(b_runs, duration)
    group = lambda v: v.reshape(35, 20).sum(axis=1)  # noqa: E731
    return {"count_ratio": round(float(cb.sum() / ca.sum()), 4),
            "per_channel_count_corr": round(float(np.corrcoef(ca, cb)[0, 1]), 4),
            "per_group_count_corr": round(float(np.corrcoef(group(ca), group(cb))[0, 1]), 4),
            "rate_map_rel_l1": round(float(np.abs(ra - rb).sum() / ra.sum()), 4),
            "rate_map_corr": round(float(np.corrcoef(ra.ravel(), rb.ravel())[0, 1]), 4)}


def bench_faithfulness(exact_runs: int, fast_runs: int) -> dict:
    name, x48 = _real_clip()
    duration = x48.size / co.TARGET_RATE
    exact = [co.cochlea_spikes(x48, co.TARGET_RATE, mode="exact", seed=s) for s in range(exact_runs)]
    fast = [co.cochlea_spikes(x48, co.TARGET_RATE, mode="fast", seed=100 + s) for s in range(fast_runs)]
    return {"clip": name, "clip_s": round(duration, 4), "exact_runs": exact_runs, "fast_runs": fast_runs,
            "fast_vs_exact": _compare(exact, fast, duration),
            "noise_floor_fast_vs_fast": _compare(fast[:exact_runs], fast[exact_runs:], duration),
            "note": "exact runs vs fast runs (different seeds); the noise floor compares fast runs with "
                    "fast runs in groups of nearly the same sizes, so it shows how far two samples of "
                    "the same process are apart. Rate map: 35 groups of 20 channels x 10 ms bins, "
                    "mean over runs; rel_l1 = sum |a - b| / sum a."}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter lauscher clip")
    parser.add_argument("--no-lauscher", action="store_true", help="skip running lauscher itself")
    parser.add_argument("--reference", metavar="FILE",
                        help="another version of the module, timed side by side with this one")
    parser.add_argument("--repeats", type=int, default=3, help="runs per recording with --reference")
    args = parser.parse_args(argv)
    result = {"machine": {"cpus": os.cpu_count(), "loadavg_start": [round(v, 2) for v in os.getloadavg()],
                          "numpy_small_call_us": round(_call_overhead_us(), 3)}}
    t0 = time.time()
    result["fast"] = bench_fast(5 if args.quick else 20)
    print("fast", result["fast"], flush=True)
    if args.reference:
        result["fast_vs_reference"] = bench_reference(args.reference, 5 if args.quick else 20, args.repeats)
        print("fast_vs_reference", result["fast_vs_reference"], flush=True)
    result["fast_memory"] = bench_memory()
    print("memory", result["fast_memory"], flush=True)
    result["exact"] = bench_exact()
    print("exact", result["exact"], flush=True)
    if not args.no_lauscher:
        result["lauscher"] = bench_lauscher(0.02 if args.quick else 0.05)
        print("lauscher", result["lauscher"], flush=True)
    result["faithfulness"] = bench_faithfulness(2 if args.quick else 4, 6 if args.quick else 24)
    print("faithfulness", result["faithfulness"], flush=True)
    result["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    result["machine"]["benchmark_wall_s"] = round(time.time() - t0, 1)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
