"""LIF semantics, the fast recurrent path against plain autograd, integer delays at evaluation."""

import copy

import pytest
import torch

from delrec.golden.layers import LIFLayer, RecurrentLIF
from delrec.golden.lif import ATan, LIFParameters, Triangle, lif_sequence, lif_step


def test_lif_step_hand_computed():
    p = LIFParameters(tau=2.0, threshold=1.0, reset="hard")
    v = torch.tensor([[0.0, 0.5, 1.2]])
    s, v2 = lif_step(v, torch.tensor([[1.0, 0.75, -0.1]]), p)
    # H = 0.5 * v + I = [1.0, 1.0, 0.5]; H == V_th fires
    assert s.tolist() == [[1.0, 1.0, 0.0]]
    assert v2.tolist() == [[0.0, 0.0, 0.5]]
    soft = LIFParameters(tau=2.0, threshold=1.0, reset="soft")
    s, v3 = lif_step(torch.tensor([[2.0]]), torch.tensor([[1.5]]), soft)
    assert s.item() == 1.0 and v3.item() == pytest.approx(1.5)


def test_surrogate_derivatives():
    x = torch.tensor([0.0, 0.1, -0.5, 2.0])
    atan = ATan(5.0).derivative(x)
    assert atan[0].item() == pytest.approx(2.5)
    assert atan[1].item() == pytest.approx(2.5 / (1 + (torch.pi / 2 * 0.5) ** 2))
    tri = Triangle(1.0).derivative(x)
    assert tri.tolist() == pytest.approx([1.0, 0.9, 0.5, 0.0])


@pytest.mark.parametrize("bad,match", [
    (dict(tau=0.5), "tau must be >= 1 step, not 0.5"),
    (dict(threshold=0.0), "Threshold must be positive, not 0.0"),
    (dict(reset="zero"), "Reset must be 'hard' or 'soft', not 'zero'"),
])
def test_bad_lif_parameters(bad, match):
    with pytest.raises(ValueError, match=match):
        LIFParameters(**bad)


CASES = [(reset, detach, sur) for reset in ("hard", "soft") for detach in (True, False)
         for sur in (ATan(5.0), Triangle(1.0))]


@pytest.mark.parametrize("reset,detach,surrogate", CASES)
@pytest.mark.parametrize("learn_width", [False, True])
def test_fast_axonal_path_equals_generic_autograd(reset, detach, surrogate, learn_width):
    """Hand-written BPTT == plain autograd through the synaptic path with d_ij = d_j."""
    torch.manual_seed(1)
    p = LIFParameters(tau=1.5, reset=reset, detach_reset=detach, surrogate=surrogate)
    N, T, B = 10, 30, 3
    fast = RecurrentLIF(N, p, "axonal", delay_init=(0, 8), sigma=2.3, learn_width=learn_width,
                        recurrent_dropout=0.3).double()
    slow = RecurrentLIF(N, p, "synaptic", delay_init=(0, 8), sigma=2.3, learn_width=learn_width,
                        recurrent_dropout=0.3).double()
    with torch.no_grad():
        fast.weight.mul_(1.5)
        slow.weight.copy_(fast.weight)
        slow.delays.delay.copy_(fast.delays.delay.expand(N, N))
        if learn_width:
            fast.delays.width_logit.normal_()
            slow.delays.width_logit.copy_(fast.delays.width_logit)
    x = torch.rand(T, B, N, dtype=torch.float64) * 1.6
    x_fast, x_slow = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(7)
    y_fast = fast(x_fast)
    torch.manual_seed(7)  # same dropout mask
    y_slow = slow(x_slow)
    assert torch.equal(y_fast, y_slow)
    assert 0.05 < y_fast.mean() < 0.95
    g = torch.randn_like(y_fast)
    (y_fast * g).sum().backward()
    (y_slow * g).sum().backward()
    torch.testing.assert_close(x_fast.grad, x_slow.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.weight.grad, slow.weight.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.delays.delay.grad, slow.delays.delay.grad.sum(0),
                               rtol=1e-10, atol=1e-12)
    assert fast.delays.delay.grad.abs().max() > 1e-3
    if learn_width:
        torch.testing.assert_close(fast.delays.width_logit.grad, slow.delays.width_logit.grad,
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reset,detach,surrogate", CASES)
def test_feedforward_sequence_equals_step_loop(reset, detach, surrogate):
    torch.manual_seed(2)
    p = LIFParameters(tau=3.0, reset=reset, detach_reset=detach, surrogate=surrogate)
    x = (torch.rand(25, 4, 7, dtype=torch.float64) * 1.2).requires_grad_()
    y = LIFLayer(7, p)(x)
    x2 = x.detach().clone().requires_grad_()
    v = torch.zeros(4, 7, dtype=torch.float64)
    out = []
    for t in range(25):
        s, v = lif_step(v, x2[t], p)
        out.append(s)
    y2 = torch.stack(out)
    assert torch.equal(y, y2)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("delay", [0.0, 3.4, 6.6, 17.0])
def test_integer_delay_arrives_exactly_d_plus_one_steps_later(delay):
    p = LIFParameters(tau=1.05, threshold=1.0, reset="hard")
    layer = RecurrentLIF(2, p, "axonal", delay_init=(0, 0), sigma=10.0)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[1, 0] = 1.5
        layer.delays.delay[0] = delay
    layer.eval()
    x = torch.zeros(40, 1, 2)
    x[3, 0, 0] = 1.0  # neuron 0 fires at t = 3
    y = layer(x)
    d = round(delay)
    assert y[:, 0, 0].nonzero().flatten().tolist() == [3]
    assert y[:, 0, 1].nonzero().flatten().tolist() == [3 + d + 1]


def test_no_delay_recurrence_is_one_step():
    p = LIFParameters(tau=1.05)
    layer = RecurrentLIF(2, p, delays=None)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[1, 0] = 1.0
    x = torch.zeros(8, 1, 2)
    x[2, 0, 0] = 1.0
    y = layer(x)
    assert y[:, 0, 1].nonzero().flatten().tolist() == [3]


def test_evaluation_does_not_modify_parameters():
    from delrec.golden.network import DelayNetwork, ModelConfig

    torch.manual_seed(3)
    net = DelayNetwork(ModelConfig(kind="delrec", inputs=5, classes=3, hidden=[8, 6],
                                   delay_init=[0.2, 9.7]))
    before = copy.deepcopy(net.state_dict())
    assert any((m.delay != m.delay.round()).any() for m in net.delay_modules())
    net.eval()
    with torch.no_grad():
        net(torch.rand(20, 2, 5).round())
    after = net.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]) if torch.is_tensor(before[k]) else before[k] == after[k], k


def test_shape_errors_name_the_shapes():
    p = LIFParameters()
    with pytest.raises(ValueError, match=r"shape \[T, B, N\], not \(3, 4\)"):
        lif_sequence(torch.zeros(3, 4), p)
    with pytest.raises(ValueError, match=r"Recurrent weight must have shape \(4, 4\), not \(3, 4\)"):
        lif_sequence(torch.zeros(2, 1, 4), p, torch.zeros(3, 4), torch.zeros(1, 4))
