"""The DelRec spread: unit mass, schedule length, sigma schedule, integer delays."""

import math

import pytest
import torch

from delrec.golden.spread import (Delays, integer_delays, schedule_length, sigma_schedule,
                                  spread_kernel)


@pytest.mark.parametrize("delay", [0.0, 0.3, 4.5, 17.25])
@pytest.mark.parametrize("sigma", [0.0, 0.7, 3.0, 10.0])
def test_continuous_spread_integrates_to_one(delay, sigma):
    taus = torch.linspace(-20, 60, 800_001, dtype=torch.float64)
    h = spread_kernel(torch.tensor([delay], dtype=torch.float64), 1 + sigma, taus, offset=1)[:, 0]
    assert torch.trapezoid(h, taus).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("delay", [0.0, 0.37, 2.5, 9.99, 23.1])
def test_linear_interpolation_conserves_every_spike(delay):
    # sigma = 0: the kernel is linear interpolation between the two nearest steps.
    d = torch.tensor([delay], dtype=torch.float64)
    taps = torch.arange(1, schedule_length(delay, 1.0, 1) + 1)
    h = spread_kernel(d, 1.0, taps, offset=1)[:, 0]
    assert h.sum().item() == pytest.approx(1.0, abs=1e-12)
    lo = math.floor(delay)
    assert h[lo].item() == pytest.approx(1 - (delay - lo), abs=1e-12)  # tap 1 + floor(d)


@pytest.mark.parametrize("width", [2.0, 3.0, 11.0])
def test_integer_width_samples_sum_to_one_when_causal(width):
    d = torch.tensor([12.3, 15.0, 20.7], dtype=torch.float64)  # d >= width: support not cut
    taps = torch.arange(1, schedule_length(20.7, width, 1) + 1)
    h = spread_kernel(d, width, taps, offset=1)
    assert torch.allclose(h.sum(0), torch.ones(3, dtype=torch.float64), atol=1e-12)


def test_normalized_spread_sums_to_one_even_when_cut():
    d = torch.tensor([0.0, 0.4, 3.3], dtype=torch.float64)
    taps = torch.arange(1, schedule_length(3.3, 5.5, 1) + 1)
    raw = spread_kernel(d, 5.5, taps, offset=1)
    assert (raw.sum(0) < 0.99).any()  # causality cuts the mass of small delays
    norm = spread_kernel(d, 5.5, taps, offset=1, normalize=True)
    assert torch.allclose(norm.sum(0), torch.ones(3, dtype=torch.float64), atol=1e-12)


def test_schedule_length_covers_exactly_the_support():
    for d_max, width in [(0.0, 1.0), (4.0, 1.0), (4.2, 1.0), (10.0, 11.0), (29.9, 3.5)]:
        K = schedule_length(d_max, width, 1)
        d = torch.tensor([d_max], dtype=torch.float64)
        h = spread_kernel(d, width, torch.arange(1, K + 3), offset=1)[:, 0]
        assert h[K - 1] > 0 and (h[K:] == 0).all(), (d_max, width, K)


def test_schedule_grows_and_shrinks_with_the_largest_delay():
    delays = Delays((5,), offset=1, init_range=(1.0, 2.0), sigma=0.5)
    lengths = []
    for largest in [2.0, 9.5, 31.0, 4.0]:
        with torch.no_grad():
            delays.delay[0] = largest
        lengths.append(delays.schedule_length())
    assert lengths == [math.ceil(1 + d + 1.5) - 1 for d in [2.0, 9.5, 31.0, 4.0]]
    assert lengths[2] > lengths[1] > lengths[0] and lengths[3] < lengths[2]
    delays.eval()  # integer delays, width 1: the last tap is 1 + round(d_max)
    assert delays.schedule_length() == 4 + 1


def test_sigma_schedule():
    assert sigma_schedule(10.0, 0, 40) == 10.0
    assert sigma_schedule(10.0, 20, 40) == pytest.approx(10.0 * 0.95 ** 50)
    assert sigma_schedule(10.0, 40, 40) == pytest.approx(10.0 * 0.95 ** 100)
    with pytest.raises(ValueError, match="epochs must be positive, not 0"):
        sigma_schedule(10.0, 0, 0)


def test_integer_delays_round_and_leave_parameters_alone():
    p = torch.nn.Parameter(torch.tensor([0.4, 0.6, 2.5, 3.5, -0.2]))
    before = p.detach().clone()
    assert integer_delays(p).tolist() == [0.0, 1.0, 2.0, 4.0, 0.0]
    assert torch.equal(p.detach(), before)


@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
def test_delay_gradient_matches_finite_differences(kind):
    from delrec.golden.layers import DelayedLinear

    torch.manual_seed(0)
    layer = DelayedLinear(6, 4, delays=kind, delay_init=(0.3, 7.7), sigma=1.7).double()
    x = (torch.rand(20, 3, 6, dtype=torch.float64) < 0.3).double()
    target = torch.randn(20, 3, 4, dtype=torch.float64)
    loss = lambda: (layer(x) * target).sum()  # noqa: E731
    loss().backward()
    grad = layer.delays.delay.grad.clone()
    eps = 1e-6
    numeric = torch.zeros_like(grad)
    flat = layer.delays.delay.data.view(-1)
    for i in range(flat.numel()):
        flat[i] += eps
        up = loss().item()
        flat[i] -= 2 * eps
        down = loss().item()
        flat[i] += eps
        numeric.view(-1)[i] = (up - down) / (2 * eps)
    assert torch.allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    assert grad.abs().max() > 0


def test_bad_delay_arguments_are_named():
    with pytest.raises(ValueError, match=r"0 <= low <= high, not \(5.0, 1.0\)"):
        Delays((3,), offset=1, init_range=(5.0, 1.0))
    with pytest.raises(ValueError, match="offset must be 0 .* or 1 .*, not 2"):
        Delays((3,), offset=2)
    with pytest.raises(ValueError, match="Sigma must be non-negative, not -1"):
        Delays((3,), offset=1).set_sigma(-1)


def test_sigma_is_exact_in_any_dtype_and_saved_with_the_model():
    d = Delays((3,), offset=1, sigma=0.1).double()
    assert d.width().item() == 1.1 and d.width().dtype == torch.float64
    d.set_sigma(0.37)
    e = Delays((3,), offset=1, sigma=5.0).double()
    e.load_state_dict(d.state_dict())
    assert e.sigma == 0.37 and torch.equal(e.delay, d.delay)
