"""NIR interchange: a core network survives a round trip through a NIR file exactly."""

import numpy as np
import pytest

from delrec.arith import CoreSpec
from delrec.build import CoreBuild
from delrec.firmware.compiler import compile_network
from delrec.golden.fixed import run_fixed
from delrec.golden.nir_io import from_nir, read_nir, to_nir, write_nir
from delrec.image import FixedNetwork


@pytest.mark.parametrize("leak,reset", [("multiply", "soft"), ("multiply", "hard"), ("shift", "soft")])
def test_round_trip_is_exact_for_the_golden_model_and_the_compiler(leak, reset, tmp_path):
    rng = np.random.default_rng(3)
    spec = CoreSpec(leak=leak, delay_bits=5)
    net = FixedNetwork.random(spec, 6, 9, 4, rng, delay_kind="axonal", reset=reset)
    net.meta = {"task": "delayed-xor", "note": "trained elsewhere"}
    back = read_nir(write_nir(net, tmp_path / "net.nir"))
    for name in ("w_in", "w_rec", "delays", "bias", "w_out", "bias_out"):
        assert np.array_equal(getattr(back, name), getattr(net, name)), name
    assert (back.theta, back.leak, back.readout_leak, back.reset) == \
        (net.theta, net.leak, net.readout_leak, net.reset)
    assert back.spec == spec and back.meta == net.meta
    x = rng.integers(0, 2, size=(30, 1, 6))
    a, b = run_fixed(net, x), run_fixed(back, x)
    assert np.array_equal(a.spikes, b.spikes) and np.array_equal(a.scores, b.scores)
    build = CoreBuild(inputs=6, neurons=9, classes=4, spec=spec)
    assert np.array_equal(compile_network(net, build).writes, compile_network(back, build).writes)


def test_graph_holds_the_delays_with_the_recurrent_step():
    rng = np.random.default_rng(1)
    net = FixedNetwork.random(CoreSpec(), 3, 4, 2, rng, delay_kind="axonal")
    graph = to_nir(net)
    assert np.array_equal(graph.nodes["delay"].delay, net.delays + 1.0)
    assert ("lif", "delay") in graph.edges and ("w_rec", "lif") in graph.edges


def test_foreign_or_unsupported_graphs_are_refused_by_name():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="synaptic"):
        to_nir(FixedNetwork.random(CoreSpec(), 3, 4, 2, rng, delay_kind="synaptic"))
    graph = to_nir(FixedNetwork.random(CoreSpec(), 3, 4, 2, rng, delay_kind="axonal"))
    graph.nodes["w_in"].weight = graph.nodes["w_in"].weight + 0.25
    with pytest.raises(ValueError, match="Input weight value .* is not an integer"):
        from_nir(graph)
    graph = to_nir(FixedNetwork.random(CoreSpec(), 3, 4, 2, rng, delay_kind="axonal"))
    graph.nodes["delay"].delay = graph.nodes["delay"].delay * 0
    with pytest.raises(ValueError, match="below the one step"):
        from_nir(graph)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_nir("/nonexistent/net.nir")


def test_cli_exports_and_imports(tmp_path, capsys):
    from delrec.cli import main

    net = FixedNetwork.random(CoreSpec(), 4, 5, 2, np.random.default_rng(5), delay_kind="axonal")
    net.save(tmp_path / "net.npz")
    assert main(["nir", "export", str(tmp_path / "net.npz"), str(tmp_path / "net.nir")]) == 0
    assert main(["nir", "import", str(tmp_path / "net.nir"), str(tmp_path / "back.npz")]) == 0
    back = FixedNetwork.load(tmp_path / "back.npz")
    assert np.array_equal(back.w_rec, net.w_rec) and np.array_equal(back.delays, net.delays)
    assert '"action": "import"' in capsys.readouterr().out
