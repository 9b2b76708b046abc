"""The golden-model benchmark (delrec.golden.bench), at reduced sizes."""

import argparse
import json
import os

import pytest

from delrec.golden import bench

SMALL = dict(batch=4, steps=24, inputs=16, neurons=32)


def _check_case(case, impl, sigma, threads, iterations):
    assert case["implementation"] == impl
    assert case["sigma"] == sigma
    assert case["threads"] == threads == case["torch_threads"]
    assert case["iterations"] == iterations
    assert len(case["ms_all"]) == iterations
    assert all(t > 0 for t in case["ms_all"])
    assert case["ms_per_iter_min"] <= case["ms_per_iter"] <= case["ms_per_iter_max"]
    assert case["peak_rss_mb"] > 0
    assert case["rss_after_setup_mb"] > 0
    assert case["peak_rss_mb"] >= case["rss_after_setup_mb"] - 1e-6
    assert case["peak_minus_setup_mb"] == pytest.approx(case["peak_rss_mb"] - case["rss_after_setup_mb"])
    assert 0 <= case["spike_rate"] <= 1
    assert case["grads_finite"]


def test_run_benchmark_ours_only(tmp_path):
    out = tmp_path / "sub" / "golden.json"
    result = bench.run_benchmark(None, threads=(1,), sigmas=(10.0,), iterations=2, out=out, warmup=1,
                                 repeats=2, progress=False, verbose=False, **SMALL)
    for key in ("machine", "config", "cases", "comparisons", "targets", "all_targets_met", "crosscheck",
                "public"):
        assert key in result
    machine = result["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch"] and machine["platform"]
    cfg = result["config"]
    assert {k: cfg[k] for k in SMALL} == SMALL
    assert cfg["tau"] == 1.05 and cfg["delay_range"] == [10.0, 30.0] and cfg["sigmas"] == [10.0]
    assert result["public"] is None and result["crosscheck"] is None
    assert result["comparisons"] == [] and result["all_targets_met"] is None
    assert result["targets"] == {"time_ratio_max": 0.2, "peak_rss_ratio_max": 0.5}
    (case,) = result["cases"]
    _check_case(case, "ours", 10.0, 1, 2)
    assert case["repeats"] == 2 and len(case["repeat_ms_per_iter"]) == 2
    assert case["ms_per_iter"] == min(case["repeat_ms_per_iter"])
    assert case["peak_rss_mb"] == max(case["repeat_peak_rss_mb"])
    written = json.loads(out.read_text())
    assert written["cases"][0]["implementation"] == "ours"
    assert written["config"]["neurons"] == 32


def test_cli_arguments_and_defaults():
    parser = bench.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args([])
    assert args.delrec_path is None and args.threads == [1, 2] and args.sigmas == [10.0, 0.1]
    assert args.out is None and args.crosscheck and args.progress and args.repeats == 1
    assert args.batch is None  # SHD sizes by default
    assert bench.SHD_CONFIG["batch"] == 32 and bench.SHD_CONFIG["steps"] == 100
    assert bench.SHD_CONFIG["inputs"] == 140 and bench.SHD_CONFIG["neurons"] == 256


def test_cli_rejects_bad_public_path(tmp_path, capsys):
    parser = bench.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--delrec-path", str(tmp_path), "--no-progress"])
    assert bench.main_from_args(args) == 1
    assert "not a DelRec checkout" in capsys.readouterr().err


def test_bad_arguments():
    with pytest.raises(ValueError):
        bench.run_benchmark(None, iterations=0)
    with pytest.raises(ValueError):
        bench.run_benchmark(None, threads=(0,))
    with pytest.raises(ValueError):
        bench.run_benchmark(None, neurons=0)
    with pytest.raises(ValueError):
        bench.run_benchmark(None, repeats=0)


def test_worker_in_process_matches_schema():
    # the measuring function itself, without a subprocess
    cfg = dict(bench.SHD_CONFIG, **SMALL)
    case = bench._worker({"mode": "time", "impl": "ours", "sigma": 0.1, "threads": 1, "config": cfg,
                          "seed": 0, "iterations": 2, "warmup": 0, "public_path": None})
    _check_case(case, "ours", 0.1, 1, 2)


@pytest.mark.slow
def test_public_comparison(tmp_path):
    """Needs DELREC_PUBLIC_PATH: a checkout of github.com/alexmaxad/DelRec and spikingjelly 0.0.0.0.14."""
    path = os.environ.get("DELREC_PUBLIC_PATH")
    assert path, ("set DELREC_PUBLIC_PATH to a checkout of github.com/alexmaxad/DelRec "
                  "(and pip install --no-deps spikingjelly==0.0.0.0.14)")
    result = bench.run_benchmark(path, threads=(1,), sigmas=(10.0, 0.1), iterations=2, warmup=1,
                                 out=tmp_path / "golden.json", progress=False, verbose=False, **SMALL)
    assert result["public"]["path"]
    assert len(result["cases"]) == 4
    for case in result["cases"]:
        _check_case(case, case["implementation"], case["sigma"], 1, 2)
    assert len(result["comparisons"]) == 2
    for comp in result["comparisons"]:
        assert comp["time_ratio"] > 0 and comp["peak_rss_ratio"] > 0
        assert isinstance(comp["time_target_met"], bool) and isinstance(comp["peak_rss_target_met"], bool)
    assert isinstance(result["all_targets_met"], bool)
    # both implementations compute the same function
    for check in result["crosscheck"]:
        for dtype in ("float32", "float64"):
            assert check[dtype]["spikes_equal"], check
            assert check[dtype]["spike_count"] > 0
            assert check[dtype]["grads_agree"], check
        assert check["passed"]
