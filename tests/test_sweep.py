"""The design-space sweep: area from YoWASP, cycles from Verilator, cached, reported."""

import json

import pytest

from delrec.sim.sweep import Workload, run_sweep, sweep_builds, write_sweep_report


def test_sweep_measures_reports_and_caches(tmp_path, monkeypatch):
    builds = sweep_builds(inputs=6, classes=2, neurons=[8], lanes=[1, 2, 3], queues=["history"],
                          delay_bits=[4], weight_bits=[6])
    assert [b.lanes for b in builds] == [1, 2]  # 3 does not divide 8: skipped
    workload = Workload(steps=8, rate=0.3, weight_scale=0.5)
    points = run_sweep(builds, ["up5k"], tmp_path, workload, jobs=2, progress=False)
    assert len(points) == 2
    for p in points:
        assert p["synthesis"]["status"] == "placed_and_routed"
        assert p["synthesis"]["lut"] > 0 and p["synthesis"]["fmax_mhz"] > 0
        assert p["cycles"]["bit_exact"] and p["cycles"]["cycles_per_step"] > 0
        assert p["sample_latency_ms"] == 1e3 * 8 / p["steps_per_second"]
    # two lanes take fewer cycles per step on the same workload
    by_lanes = {p["lanes"]: p for p in points}
    assert by_lanes[2]["cycles"]["cycles_per_step"] < by_lanes[1]["cycles"]["cycles_per_step"]
    files = write_sweep_report(points, tmp_path, workload)
    table = open(files["markdown"]).read()
    assert table.count("| up5k | 8 |") == 2
    assert json.loads(open(files["json"]).read())["points"][0]["device"] == "up5k"
    assert open(files["plot"], "rb").read(4) == b"\x89PNG"

    # a second run only reads the cache: no tool runs
    def refuse(*args, **kwargs):
        raise AssertionError("a cached point was measured again")

    monkeypatch.setattr("delrec.hw.synth.synthesis_case", refuse)
    monkeypatch.setattr("delrec.sim.cosim.cosimulate", refuse)
    again = run_sweep(builds, ["up5k"], tmp_path, workload, jobs=1, progress=False)
    assert [p["synthesis"]["lut"] for p in again] == [p["synthesis"]["lut"] for p in points]

    # other gateware: the cached points are not reused
    monkeypatch.setattr("delrec.sim.sweep.gateware_version", lambda: "other gateware")
    with pytest.raises(AssertionError, match="measured again"):
        run_sweep(builds[:1], ["up5k"], tmp_path, workload, jobs=1, progress=False)
