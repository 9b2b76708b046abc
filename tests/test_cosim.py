"""Co-simulation of the RTL inference core (Verilator + cocotb) against the fixed-point golden model.

Every spike, membrane, readout value and score at every step must be equal.
The default suite runs a representative subset (a few random networks per
architecture, a trained network); ``-m slow`` runs the full set: 40 random
networks on each of five builds (both queue architectures, both delay kinds,
input delays, P in {1, 2, 4}, a narrow build for the saturation corners) and
a trained spoken-digit network on 50 real recordings.
"""

import zlib
from pathlib import Path

import numpy as np
import pytest

from delrec.arith import CoreSpec
from delrec.build import CoreBuild
from delrec.sim.cosim import SimulationFailure, cosimulate, random_cases

BUILDS = {
    "ring-axonal-p2": CoreBuild(inputs=5, neurons=8, classes=3, spec=CoreSpec(delay_bits=3), lanes=2),
    "ring-synaptic-p1": CoreBuild(inputs=4, neurons=6, classes=3, spec=CoreSpec(delay_bits=3),
                                  delay_kind="synaptic"),
    "history-axonal-p2": CoreBuild(inputs=5, neurons=8, classes=3, spec=CoreSpec(delay_bits=3),
                                   lanes=2, queue="history"),
    "history-input-delays-p2": CoreBuild(inputs=5, neurons=8, classes=3, spec=CoreSpec(delay_bits=3),
                                         lanes=2, queue="history", input_delays="axonal"),
    "narrow-ring-p4": CoreBuild(inputs=4, neurons=8, classes=2, lanes=4,
                                spec=CoreSpec(v_bits=10, acc_bits=12, readout_bits=12, score_bits=16,
                                              delay_bits=4, leak="shift")),
}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    import os
    root = os.environ.get("DELREC_SIM_BUILD")
    return Path(root) if root else Path.cwd() / "build" / "sim"


@pytest.mark.parametrize("name", list(BUILDS))
def test_random_networks_bit_exact(name, build_root):
    build = BUILDS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    networks, inputs = random_cases(build, 4, rng, steps=(12, 20))
    result = cosimulate(build, networks, inputs, stall=0.3, seed=1, build_root=build_root)
    assert sum(int(t.spikes.sum()) for t in result.golden) > 0
    assert all(c > 0 for cycles in result.cycles for c in cycles)
    for whole, after_input in zip(result.step_cycles, result.cycles):
        assert all(w >= a for w, a in zip(whole, after_input))
    for rtl, golden in zip(result.spikes, result.golden):  # what the RTL sent, as received
        np.testing.assert_array_equal(rtl, golden.spikes[:, 0])
    assert result.predictions() == [int(t.predictions()[0]) for t in result.golden]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILDS))
def test_random_networks_bit_exact_full(name, build_root):
    build = BUILDS[name]
    rng = np.random.default_rng(1000 + zlib.crc32(name.encode()))
    networks, inputs = random_cases(build, 40, rng)
    cosimulate(build, networks, inputs, stall=0.3, seed=2, build_root=build_root)


def test_a_mismatch_names_the_step_neuron_and_values(build_root):
    """Tamper with the golden trace's network: the RTL must be caught."""
    build = BUILDS["ring-axonal-p2"]
    rng = np.random.default_rng(5)
    networks, inputs = random_cases(build, 1, rng, steps=(15, 15))
    import delrec.sim.cosim as cosim

    real = cosim.run_fixed

    def off_by_one(net, x):
        trace = real(net, x)
        trace.v[5:, :, 0] += 1  # a membrane differs from step 5 on
        return trace

    cosim.run_fixed = off_by_one
    try:
        with pytest.raises(SimulationFailure, match=r"sample 0, step 5: membrane\[0\] = \d+ in RTL, \d+ in the golden model"):
            cosimulate(build, networks, inputs, stall=0.0, seed=3, build_root=build_root)
    finally:
        cosim.run_fixed = real


def test_trained_delrec_network_runs_bit_exact(tmp_path, build_root):
    """A DelRec network trained briefly on the delayed-xor task, quantized, in RTL."""
    import torch

    from delrec.golden.fixed import quantize
    from delrec.golden.tasks.base import load_task
    from delrec.golden.training import build_model, load_checkpoint, make_configs, train

    options = dict(train_size=64, val_size=16, test_size=16)
    task = load_task("delayed-xor", **options)
    model_config, train_config = make_configs(task, dict(hidden=[16], epochs=1, task_options=options))
    train(model_config, train_config, tmp_path, progress=False, task=task)
    model = build_model(load_checkpoint(tmp_path / "checkpoint.pt"))
    x = torch.stack([task.test[i][0] for i in range(4)]).to(torch.int64).numpy()  # [4, T, C]
    build = CoreBuild(inputs=task.inputs, neurons=16, classes=task.classes, lanes=2, queue="history")
    net = quantize(model, build.spec)
    result = cosimulate(build, [net] * len(x), list(x), stall=0.2, seed=4, build_root=build_root)
    assert len(result.cycles) == 4


@pytest.fixture(scope="module")
def spoken_model(tmp_path_factory):
    """A one-layer DelRec trained on spoken digits (mel), once for every test that needs it."""
    from delrec.golden.tasks.base import load_task
    from delrec.golden.training import build_model, load_checkpoint, make_configs, train

    options = dict(data=str(SHARED), steps=100)
    task = load_task("spoken-digits", **options)
    model_config, train_config = make_configs(task, dict(hidden=[128], epochs=8, task_options=options))
    out = tmp_path_factory.mktemp("spoken")
    train(model_config, train_config, out, progress=False, task=task)
    return task, build_model(load_checkpoint(out / "checkpoint.pt"))


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs the shared spoken digits")
@pytest.mark.parametrize("queue", ["ring", "history"])
def test_trained_spoken_digit_network_on_50_recordings(spoken_model, build_root, queue):
    """Train a one-layer DelRec on spoken digits (mel), quantize to 8 bits, co-simulate 50 test samples."""
    import torch

    from delrec.golden.fixed import quantize

    task, model = spoken_model
    x = torch.stack([task.test[i][0] for i in range(50)]).to(torch.int64).numpy()
    labels = np.array([task.test[i][1] for i in range(50)])
    build = CoreBuild(inputs=task.inputs, neurons=128, classes=task.classes, lanes=4, queue=queue)
    net = quantize(model, build.spec, max_input=int(x.max()))
    result = cosimulate(build, [net] * 50, list(x), stall=0.0, seed=5, check_state=False,
                        build_root=build_root)
    predictions = np.array([t.predictions()[0] for t in result.golden])
    assert (predictions == labels).mean() > 0.8


@pytest.mark.slow
def test_waves_dump_a_vcd(tmp_path):
    build = CoreBuild(inputs=3, neurons=4, classes=2, spec=CoreSpec(delay_bits=3))
    networks, inputs = random_cases(build, 1, np.random.default_rng(0), steps=(5, 5))
    cosimulate(build, networks, inputs, waves=True, build_root=tmp_path, work_dir=tmp_path / "run")
    vcd = (tmp_path / "run" / "dump.vcd").read_text()
    assert "spikes__valid" in vcd and "#" in vcd


def test_host_driver_through_the_uart_top(build_root):
    """The unchanged host driver loads a network over the UART pins of the top and runs it."""
    from delrec.sim.host_cosim import cosimulate_host

    from delrec.image import FixedNetwork

    build = CoreBuild(inputs=4, neurons=6, classes=3, spec=CoreSpec(delay_bits=3), lanes=2)
    rng = np.random.default_rng(11)
    net = FixedNetwork.random(build.spec, 4, 6, 3, rng, weight_scale=0.1, max_input=40)
    xs = [rng.integers(0, 3, size=(8, 4)) for _ in range(2)]
    xs[1][3] = 35  # 140 events in one step: EVENTS, then STEP, back to back over the line
    summary = cosimulate_host(build, net, xs, clocks_per_bit=4, build_root=build_root)
    assert [s["STEPS"] for s in summary["samples"]] == [8, 8]
    assert summary["stats"]["frames_bad"] == 0 and summary["stats"]["frames_ok"] > 10


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs the shared spoken digits")
def test_spoken_digits_through_the_host_link(spoken_model, build_root):
    """Checkpoint -> quantize -> compile -> WRITE frames over UART -> real recordings -> predictions."""
    import torch

    from delrec.golden.fixed import quantize, run_fixed
    from delrec.sim.host_cosim import cosimulate_host

    task, model = spoken_model
    x = torch.stack([task.test[i][0] for i in range(10)]).to(torch.int64).numpy()
    build = CoreBuild(inputs=task.inputs, neurons=128, classes=task.classes, lanes=4, queue="history")
    net = quantize(model, build.spec, max_input=int(x.max()))
    summary = cosimulate_host(build, net, list(x), clocks_per_bit=4, build_root=build_root)
    golden = run_fixed(net, np.transpose(x, (1, 0, 2))).predictions()
    assert [s["prediction"] for s in summary["samples"]] == golden.tolist()
    assert summary["stats"]["frames_bad"] == 0
