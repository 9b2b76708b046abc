"""The fixed-point inference golden model, the network image and the quantizer."""

import numpy as np
import pytest
import torch

from delrec.arith import CoreSpec, neuron_update, readout_update, signed_range
from delrec.golden.fixed import evaluate_quantized, quantize, run_fixed
from delrec.golden.network import DelayNetwork, ModelConfig
from delrec.image import FixedNetwork


def scalar_reference(net: FixedNetwork, x: np.ndarray):
    """One sample, one neuron at a time, straight from delrec.arith (no vectorisation)."""
    spec = net.spec
    T, C = x.shape
    N, K = net.neurons, net.classes
    d = net.delay_matrix()
    spikes = np.zeros((T, N), np.int64)
    vs = np.zeros((T, N), np.int64)
    rs = np.zeros((T, K), np.int64)
    ss = np.zeros((T, K), np.int64)
    v = [0] * N
    r = [0] * K
    score = [0] * K
    for t in range(T):
        for i in range(N):
            current = sum(int(net.w_in[i, c]) * int(x[t, c]) for c in range(C))
            for j in range(N):
                src = t - 1 - int(d[i, j])
                if src >= 0 and spikes[src, j]:
                    current += int(net.w_rec[i, j])
            assert abs(current) <= signed_range(spec.acc_bits)[1]
            _, spikes[t, i], v[i] = neuron_update(v[i], current, int(net.bias[i]), net.theta,
                                                  net.leak, net.reset, spec)
        vs[t] = v
        for k in range(K):
            current = sum(int(net.w_out[k, j]) for j in range(N) if spikes[t, j])
            r[k], score[k] = readout_update(r[k], current, int(net.bias_out[k]), net.readout_leak,
                                            score[k], spec)
        rs[t], ss[t] = r, score
    return spikes, vs, rs, ss


CASES = [
    dict(delay_kind="axonal", reset="hard", leak="multiply"),
    dict(delay_kind="axonal", reset="soft", leak="shift"),
    dict(delay_kind="synaptic", reset="soft", leak="multiply"),
    dict(delay_kind="synaptic", reset="hard", leak="shift"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c.values()))
def test_run_fixed_equals_scalar_reference(case):
    rng = np.random.default_rng(7)
    spec = CoreSpec(delay_bits=3, leak=case["leak"])
    for trial in range(3):
        net = FixedNetwork.random(spec, 4, 6, 3, rng, delay_kind=case["delay_kind"],
                                  reset=case["reset"], max_input=2)
        x = rng.integers(0, 3, size=(25, 2, 4)) * (rng.random((25, 2, 4)) < 0.5)
        trace = run_fixed(net, x)
        assert trace.spikes.sum() > 0
        for b in range(2):
            spikes, v, r, s = scalar_reference(net, x[:, b])
            np.testing.assert_array_equal(trace.spikes[:, b], spikes)
            np.testing.assert_array_equal(trace.v[:, b], v)
            np.testing.assert_array_equal(trace.readout[:, b], r)
            np.testing.assert_array_equal(trace.scores[:, b], s)


def test_delay_zero_and_depth_minus_one_arrive_when_stated():
    spec = CoreSpec(delay_bits=3)  # D = 8
    N = 3
    w_in = np.zeros((N, 1), np.int64)
    w_in[0, 0] = 100  # input drives neuron 0 only
    w_rec = np.zeros((N, N), np.int64)
    w_rec[1, 0] = 100  # 0 -> 1 with delay 0 (synaptic)
    w_rec[2, 0] = 100  # 0 -> 2 with delay 7
    delays = np.zeros((N, N), np.int64)
    delays[2, 0] = 7
    net = FixedNetwork(spec=spec, w_in=w_in, w_rec=w_rec, delays=delays, bias=np.zeros(N, np.int64),
                       w_out=np.zeros((2, N), np.int64), bias_out=np.zeros(2, np.int64), theta=50,
                       leak=0, readout_leak=0)
    x = np.zeros((20, 1, 1), np.int64)
    x[2] = 1
    spikes = run_fixed(net, x).spikes[:, 0]
    assert np.flatnonzero(spikes[:, 0]).tolist() == [2]
    assert np.flatnonzero(spikes[:, 1]).tolist() == [3]       # t + 1 + 0
    assert np.flatnonzero(spikes[:, 2]).tolist() == [2 + 1 + 7]


def test_membrane_saturates_and_soft_reset_keeps_the_excess():
    spec = CoreSpec(v_bits=8, acc_bits=10, weight_bits=8)
    net = FixedNetwork(spec=spec, w_in=np.array([[127]]), w_rec=np.zeros((1, 1), np.int64),
                       delays=np.zeros(1, np.int64), bias=np.array([100]), w_out=np.array([[1]]),
                       bias_out=np.array([0]), theta=100, leak=256, readout_leak=0, reset="soft")
    trace = run_fixed(net, np.ones((3, 1, 1), np.int64))
    assert trace.h[0, 0, 0] == 127          # 127 + 100 saturates at the 8-bit maximum
    assert trace.v[0, 0, 0] == 27           # soft reset: 127 - 100


def test_image_rejects_out_of_range_values_naming_them():
    rng = np.random.default_rng(0)
    net = FixedNetwork.random(CoreSpec(), 3, 4, 2, rng)
    kwargs = {k: getattr(net, k) for k in ("w_in", "w_rec", "delays", "bias", "w_out", "bias_out",
                                            "theta", "leak", "readout_leak", "reset")}
    bad = dict(kwargs, delays=np.array([0, 1, 64, 2]))
    with pytest.raises(ValueError, match=r"delays\[2\] = 64 is outside the delay range of D = 64"):
        FixedNetwork(spec=net.spec, **bad)
    w = net.w_in.copy()
    w[1, 2] = 128
    with pytest.raises(ValueError, match=r"w_in\[1, 2\] = 128 is outside the 8-bit weight range"):
        FixedNetwork(spec=net.spec, **dict(kwargs, w_in=w))
    with pytest.raises(ValueError, match="Threshold 0"):
        FixedNetwork(spec=net.spec, **dict(kwargs, theta=0))
    with pytest.raises(ValueError, match="must have shape"):
        FixedNetwork(spec=net.spec, **dict(kwargs, bias=np.zeros(5, np.int64)))
    big = np.full((4, 3), 127)
    with pytest.raises(ValueError, match="accumulator"):
        FixedNetwork(spec=CoreSpec(acc_bits=9), **dict(kwargs, w_in=big))


def test_image_round_trips_through_a_file(tmp_path):
    net = FixedNetwork.random(CoreSpec(leak="shift"), 5, 7, 3, np.random.default_rng(1),
                              delay_kind="synaptic")
    net.meta = {"source": "test"}
    path = net.save(tmp_path / "net.npz")
    back = FixedNetwork.load(path)
    assert back.equals(net) and back.meta == {"source": "test"}
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz is not a delrec fixed-network image"):
        FixedNetwork.load(tmp_path / "junk.npz")


def test_run_fixed_rejects_bad_input():
    net = FixedNetwork.random(CoreSpec(), 3, 4, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"shape \[T, B, 3\]"):
        run_fixed(net, np.zeros((5, 2, 4), np.int64))
    with pytest.raises(ValueError, match=">= 0"):
        run_fixed(net, -np.ones((5, 2, 3), np.int64))


@pytest.mark.parametrize("kind", ["delrec", "delrec-synaptic", "recurrent", "feedforward"])
def test_quantized_network_tracks_the_float_network(kind):
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, inputs=6, classes=3, hidden=[16], tau=2.0, readout_tau=2.0,
                      delay_init=[0.0, 10.0], batch_norm=True)
    model = DelayNetwork(cfg)
    with torch.no_grad():
        model.projections[0].weight.mul_(2.0)
        model.norms[0].running_mean.uniform_(-0.1, 0.1)
        model.norms[0].running_var.uniform_(0.5, 1.5)
    net = quantize(model, CoreSpec(weight_bits=12, acc_bits=20))
    assert np.abs(net.w_in).max() == 2047 or np.abs(net.w_rec).max() == 2047
    x = (torch.rand(40, 8, 6) < 0.3).to(torch.float32)
    model.eval()
    with torch.no_grad():
        model(x)
        # hidden spikes of the float model, from its readout input
        float_spikes = []
        hook = model.readout.register_forward_hook(lambda m, i, o: float_spikes.append(i[0]))
        model(x)
        hook.remove()
    trace = run_fixed(net, x.to(torch.int64))
    agreement = (trace.spikes == float_spikes[0].numpy()).mean()
    assert float_spikes[0].sum() > 10
    assert agreement > 0.97


def test_quantize_rejects_what_the_core_cannot_run():
    cfg = ModelConfig(kind="delrec", inputs=4, classes=2, hidden=[8, 8])
    with pytest.raises(ValueError, match="one hidden layer"):
        quantize(DelayNetwork(cfg))
    cfg = ModelConfig(kind="ff-delays", inputs=4, classes=2, hidden=[8])
    with pytest.raises(ValueError, match="no feedforward delays"):
        quantize(DelayNetwork(cfg))
    cfg = ModelConfig(kind="delrec", inputs=4, classes=2, hidden=[8], delay_init=[70.0, 80.0])
    with pytest.raises(ValueError, match="exceeds the core's largest delay 63"):
        quantize(DelayNetwork(cfg))


def test_evaluate_quantized_reports_both_accuracies():
    torch.manual_seed(1)
    model = DelayNetwork(ModelConfig(kind="delrec", inputs=5, classes=3, hidden=[12], tau=2.0,
                                     delay_init=[0.0, 5.0]))
    net = quantize(model)
    data = [((torch.rand(20, 4, 5) < 0.4).float(), torch.randint(0, 3, (4,))) for _ in range(2)]
    result = evaluate_quantized(model, net, data)
    assert result["samples"] == 8
    assert 0 <= result["fixed_accuracy"] <= 1 and 0 <= result["agreement"] <= 1
