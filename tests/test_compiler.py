"""The model compiler: fit checks with clear errors, padding, the write addressing."""

import numpy as np
import pytest

from delrec.arith import CoreSpec, signed_range
from delrec.build import CoreBuild
from delrec.firmware.compiler import compile_network
from delrec.golden.fixed import run_fixed
from delrec.hw.ports import ConfigRegister, WriteTarget
from delrec.image import FixedNetwork


def decode(writes, build):
    """Rebuild the memories from the write list (the core's addressing, independently)."""
    C, N, K, spec = build.inputs, build.neurons, build.classes, build.spec

    def signed(v, bits):
        return v - (1 << bits) if v >> (bits - 1) else v

    mem = dict(w_in=np.zeros((N, C), int), w_rec=np.zeros((N, N), int), bias=np.zeros(N, int),
               w_out=np.zeros((K, N), int), bias_out=np.zeros(K, int),
               delays=np.zeros(N if build.delay_kind == "axonal" else (N, N), int), config={})
    for target, addr, data in writes.tolist():
        t = WriteTarget(target)
        if t is WriteTarget.W_IN:
            mem["w_in"][addr % N, addr // N] = signed(data, spec.weight_bits)
        elif t is WriteTarget.W_REC:
            mem["w_rec"][addr % N, addr // N] = signed(data, spec.weight_bits)
        elif t is WriteTarget.DELAY:
            if build.delay_kind == "axonal":
                mem["delays"][addr] = data
            else:
                mem["delays"][addr % N, addr // N] = data
        elif t is WriteTarget.BIAS:
            mem["bias"][addr] = signed(data, spec.v_bits)
        elif t is WriteTarget.W_OUT:
            mem["w_out"][addr % K, addr // K] = signed(data, spec.weight_bits)
        elif t is WriteTarget.BIAS_OUT:
            mem["bias_out"][addr] = signed(data, spec.readout_bits)
        elif t is WriteTarget.CONFIG:
            mem["config"][ConfigRegister(addr)] = data
    return mem


@pytest.mark.parametrize("delay_kind", ["axonal", "synaptic"])
def test_writes_decode_to_the_padded_network(delay_kind):
    rng = np.random.default_rng(3)
    spec = CoreSpec(delay_bits=4)
    net = FixedNetwork.random(spec, 3, 5, 2, rng, delay_kind=delay_kind, reset="soft")
    build = CoreBuild(inputs=4, neurons=8, classes=3, spec=spec, lanes=2, delay_kind=delay_kind)
    image = compile_network(net, build)
    mem = decode(image.writes, build)
    padded = image.network
    for name in ("w_in", "w_rec", "bias", "w_out", "bias_out", "delays"):
        np.testing.assert_array_equal(mem[name], getattr(padded, name), err_msg=name)
    np.testing.assert_array_equal(padded.w_in[:5, :3], net.w_in)
    assert mem["config"] == {ConfigRegister.THETA: net.theta, ConfigRegister.LEAK: net.leak,
                             ConfigRegister.READOUT_LEAK: net.readout_leak, ConfigRegister.RESET: 1,
                             ConfigRegister.SCORE_START: net.score_start}
    assert padded.bias_out[2] == signed_range(spec.readout_bits)[0]
    # the padded network behaves as the original on the original neurons and classes
    x = rng.integers(0, 2, size=(30, 1, 3))
    small = run_fixed(net, x)
    xp = np.zeros((30, 1, 4), np.int64)
    xp[..., :3] = x
    big = run_fixed(padded, xp)
    np.testing.assert_array_equal(big.spikes[..., :5], small.spikes)
    assert not big.spikes[..., 5:].any()
    np.testing.assert_array_equal(big.scores[..., :2], small.scores)
    np.testing.assert_array_equal(big.predictions(), small.predictions())


def test_axonal_network_expands_onto_a_synaptic_core():
    net = FixedNetwork.random(CoreSpec(), 3, 4, 2, np.random.default_rng(0), delay_kind="axonal")
    build = CoreBuild(inputs=3, neurons=4, classes=2, delay_kind="synaptic")
    image = compile_network(net, build)
    np.testing.assert_array_equal(image.network.delays, net.delay_matrix())


def test_fit_errors_name_the_value_and_the_limit():
    rng = np.random.default_rng(1)
    net = FixedNetwork.random(CoreSpec(), 5, 6, 3, rng, delay_kind="synaptic")
    with pytest.raises(ValueError, match="6 neurons; this core build holds at most 4"):
        compile_network(net, CoreBuild(inputs=5, neurons=4, classes=3, delay_kind="synaptic"))
    with pytest.raises(ValueError, match="5 input channels; this core build holds at most 2"):
        compile_network(net, CoreBuild(inputs=2, neurons=8, classes=3, delay_kind="synaptic"))
    with pytest.raises(ValueError, match="different delays to its targets"):
        compile_network(net, CoreBuild(inputs=5, neurons=6, classes=3, delay_kind="axonal"))
    with pytest.raises(ValueError, match=r"delay_bits 6 \(network\) vs 4 \(core\)"):
        compile_network(net, CoreBuild(inputs=5, neurons=6, classes=3, spec=CoreSpec(delay_bits=4),
                                       delay_kind="synaptic"))
    with pytest.raises(ValueError, match="accumulator"):
        compile_network(net, CoreBuild(inputs=5, neurons=6, classes=3, delay_kind="synaptic"),
                        max_input=1000)


def test_build_validation():
    with pytest.raises(ValueError, match="Lane count must divide the neuron count 6, not 4"):
        CoreBuild(inputs=1, neurons=6, classes=2, lanes=4)
    with pytest.raises(ValueError, match="needs delay_kind='axonal'"):
        CoreBuild(inputs=1, neurons=4, classes=2, delay_kind="synaptic", queue="history")
