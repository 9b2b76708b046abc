"""Three-factor online rule (float): equal to autograd where it should be, and it learns."""

import math

import pytest
import torch
import torch.nn.functional as F

from delrec.golden.lif import surrogate_from_name
from delrec.golden.online import OnlineConfig, OnlineNetwork, gaussian, trace_memory


def reference_loss(net: OnlineNetwork, x, labels):
    """The same network written densely with autograd (no online machinery).

    Delayed reads are dense kernels over every lag of the history; recurrent
    spikes are detached (the rule's truncation) and so is the reset.
    """
    c = net.config
    T, B, C = x.shape
    L = net.history
    lags = torch.arange(L, dtype=torch.float64)
    sur = surrogate_from_name(c.surrogate, c.surrogate_scale)

    def kernel(d, offset):
        if c.forward == "smooth":
            xk = lags - offset - d.unsqueeze(-1)
            k = torch.where(xk.abs() <= c.radius * c.sigma, gaussian(xk, c.sigma), torch.zeros_like(xk))
        else:
            k = (lags == offset + torch.floor(d.detach() + 0.5).unsqueeze(-1)).to(torch.float64)
        return k  # [..., L]

    def delayed(history, w, d, kind, offset):
        # history: list of [B, P] tensors, newest last; returns current [B, N]
        past = torch.stack([history[-1 - m] if m < len(history) else torch.zeros_like(history[0])
                            for m in range(L)], dim=-1)  # [B, P, L]
        if kind is None:
            return past[..., offset] @ w.T
        k = kernel(d, offset)
        if kind == "synaptic":
            return torch.einsum("ij,ijm,bjm->bi", w, k, past)
        return torch.einsum("ij,jm,bjm->bi", w, k, past)

    xs, ss = [], []
    v = torch.zeros(B, c.hidden, dtype=torch.float64)
    u = torch.zeros(B, c.classes, dtype=torch.float64)
    loss = 0
    target = F.one_hot(labels, c.classes).to(torch.float64)
    for t in range(T):
        xs.append(x[t].to(torch.float64))
        current = net.bias + delayed(xs, net.w_in, net.d_in, c.input_delays, 0)
        if c.recurrent:
            hist = [s.detach() for s in ss] + [torch.zeros_like(v)]
            current = current + delayed(hist, net.w_rec, net.d_rec, c.recurrent_delays, 1)
        h = c.decay * v + current
        s = sur(h - c.threshold)
        v = h * (1 - s.detach()) if c.reset == "hard" else h - c.threshold * s.detach()
        ss.append(s)
        u = c.readout_decay * u + s @ net.w_out.T + net.b_out
        if t >= c.loss_start:
            if c.loss == "ce":
                loss = loss + F.cross_entropy(u, labels, reduction="sum")
            else:
                loss = loss + 0.5 * ((u - target) ** 2).sum()
    return loss, torch.stack(ss)


def batch(config, T=24, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, config.inputs, generator=g) < 0.3).to(torch.float64)
    labels = torch.randint(0, config.classes, (B,), generator=g)
    return x, labels


def compare(config, seed=0, names=None):
    net = OnlineNetwork(config, seed=seed)
    x, labels = batch(config, seed=seed)
    online = net.gradients(x, labels)
    params = {n: getattr(net, n) for n in online}
    for p in params.values():
        p.requires_grad_(True)
    loss, spikes = reference_loss(net, x, labels)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    assert spikes.sum() > 0, "test network silent"
    for (n, p), g in zip(params.items(), grads):
        if names is not None and n not in names:
            continue
        g = torch.zeros_like(p) if g is None else g
        assert online[n].shape == p.shape
        scale = max(1.0, float(g.abs().max()))
        assert torch.allclose(online[n], g, atol=1e-6 * scale, rtol=0), \
            f"{n}: max gap {float((online[n] - g).abs().max())}"
        assert float(g.abs().max()) > 0 or n.startswith("b"), f"{n}: zero gradient, weak test"
    return online


COMMON = dict(inputs=6, hidden=5, classes=3, max_delay=8, delay_init=(0.5, 6.5), forward="smooth",
              sigma=1.2, radius=3.0, tau=3.0, threshold=0.6, input_gain=4.0)


@pytest.mark.parametrize("input_delays", ["synaptic", "axonal", None])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_feedforward_rule_equals_autograd(input_delays, reset, loss):
    config = OnlineConfig(**COMMON, input_delays=input_delays, reset=reset, loss=loss, loss_start=3)
    compare(config)


@pytest.mark.parametrize("surrogate", [("atan", 2.0), ("triangle", 0.8)])
def test_surrogates_and_readout(surrogate):
    config = OnlineConfig(**dict(COMMON, input_delays="synaptic", surrogate=surrogate[0],
                                 surrogate_scale=surrogate[1]))
    compare(config, seed=3)


@pytest.mark.parametrize("rec_delays", ["axonal", "synaptic", None])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_recurrent_truncated_rule_equals_hand_truncated_autograd(rec_delays, reset):
    config = OnlineConfig(**COMMON, input_delays="axonal", recurrent=True, recurrent_delays=rec_delays,
                          reset=reset, recurrent_gain=2.0)
    compare(config, seed=1)


def test_hard_forward_weights_exact_delays_use_the_surrogate():
    config = OnlineConfig(**dict(COMMON, forward="hard"), input_delays="synaptic")
    online = compare(config, names={"w_in", "bias", "w_out", "b_out"})
    assert float(online["d_in"].abs().max()) > 0  # the Gaussian surrogate gives delays a signal


def test_readout_memory_is_the_stated_approximation():
    """With beta > 0 the readout weights stay exact; hidden weights differ (e-prop truncation)."""
    config = OnlineConfig(**COMMON, input_delays="axonal", readout_decay=0.5)
    compare(config, names={"w_out", "b_out"})
    with pytest.raises(AssertionError, match="w_in"):
        compare(config, names={"w_in"})


def test_updates_applied_every_k_steps_and_delays_clipped():
    config = OnlineConfig(**dict(COMMON, forward="hard"), input_delays="synaptic", update_every=4,
                          lr_delay=50.0)
    net = OnlineNetwork(config, seed=0)
    before = {n: p.clone() for n, p in net.named_parameters()}
    x, labels = batch(config)
    net.run(x, labels, learn=True)
    assert not torch.equal(before["w_in"], net.w_in)
    assert float(net.d_in.min()) >= 0 and float(net.d_in.max()) <= config.max_delay
    assert torch.equal(before["feedback"] if "feedback" in before else net.feedback, net.feedback)


def test_random_feedback_differs_from_symmetric():
    sym = OnlineNetwork(OnlineConfig(**COMMON, input_delays="axonal"), seed=0)
    rnd = OnlineNetwork(OnlineConfig(**COMMON, input_delays="axonal", feedback="random"), seed=0)
    x, labels = batch(sym.config)
    a, b = sym.gradients(x, labels), rnd.gradients(x, labels)
    assert torch.equal(a["w_out"], b["w_out"])  # the readout never uses feedback
    assert not torch.allclose(a["w_in"], b["w_in"])


def test_trace_memory_table():
    soft = trace_memory(OnlineConfig(inputs=140, hidden=256, input_delays="axonal", learn_weights=False,
                                     update_every=1))
    assert soft["input_delay_traces"] == 140 and "input_weight_traces" not in soft
    assert soft["delay_state"] == 140
    deferred = trace_memory(OnlineConfig(inputs=140, hidden=256, input_delays="axonal",
                                         learn_weights=False))
    assert deferred["delay_state"] == 2 * 140
    sample = trace_memory(OnlineConfig(inputs=140, hidden=256, input_delays="axonal",
                                       learn_weights=False, signal="sample"))
    assert sample["input_delay_eligibility_sums"] == 256 * 140
    syn = trace_memory(OnlineConfig(inputs=140, hidden=256, input_delays="synaptic",
                                    learn_weights=False, update_every=1))
    assert syn["input_delay_traces"] == 256 * 140
    hard = trace_memory(OnlineConfig(inputs=140, hidden=256, input_delays="axonal", reset="hard",
                                     learn_weights=False, update_every=1))
    assert hard["input_delay_traces"] == 256 * 140


def test_bad_configuration_named():
    with pytest.raises(ValueError, match="Initial delay range must lie in \\[0, 8\\]"):
        OnlineConfig(max_delay=8, delay_init=(0, 9))
    with pytest.raises(ValueError, match="Recurrent delays need recurrent=True"):
        OnlineConfig(recurrent_delays="axonal")
    with pytest.raises(ValueError, match="Input must have shape \\[T, B, 6\\]"):
        OnlineNetwork(OnlineConfig(**COMMON)).run(torch.zeros(4, 2, 5))


def reference_sample_loss(net, x, labels):
    """Autograd of the cross-entropy of the summed readout (per-sample signal)."""
    c = net.config
    _, spikes = reference_loss(net, x, labels)
    scores = (spikes[c.loss_start:] @ net.w_out.T + net.b_out).sum(0)
    return F.cross_entropy(scores, labels, reduction="sum"), spikes


@pytest.mark.parametrize("input_delays", ["synaptic", "axonal"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("recurrent", [False, True])
def test_per_sample_signal_equals_autograd_of_summed_readout(input_delays, reset, recurrent):
    config = OnlineConfig(**COMMON, input_delays=input_delays, reset=reset, signal="sample",
                          loss_start=4, recurrent=recurrent,
                          recurrent_delays="axonal" if recurrent else None)
    net = OnlineNetwork(config, seed=2)
    x, labels = batch(config, seed=2)
    online = net.gradients(x, labels)
    params = {n: getattr(net, n).requires_grad_(True) for n in online}
    loss, spikes = reference_sample_loss(net, x, labels)
    assert spikes.sum() > 0
    grads = torch.autograd.grad(loss, list(params.values()))
    for (n, p), g in zip(params.items(), grads):
        assert float(g.abs().max()) > 0, n
        assert torch.allclose(online[n], g, atol=1e-6 * max(1.0, float(g.abs().max())), rtol=0), n
    with pytest.raises(ValueError, match="per-sample learning signal needs update_every=0"):
        OnlineConfig(**COMMON, signal="sample", update_every=3)


def test_online_configs_keep_an_explicit_none():
    from delrec.golden.online_training import make_online_configs
    from delrec.golden.tasks.base import load_task

    task = load_task("delayed-xor", train_size=8, val_size=8, test_size=8)
    net, _ = make_online_configs(task, dict(input_delays=None))
    assert net.input_delays is None
    net, _ = make_online_configs(task, {})
    assert net.input_delays == "synaptic"
