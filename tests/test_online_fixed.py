"""Fixed-point three-factor rule: agrees with the float rule within its documented bound."""

import pytest
import torch

from delrec.arith import CoreSpec, LearningRates, Lfsr16, forward_delay, gaussian_derivative_lut, \
    rshift_round, sat
from delrec.golden.online import OnlineConfig
from delrec.golden.online_fixed import ONLINE_SPEC, FixedOnlineNetwork

SPEC = ONLINE_SPEC


def config(**kw):
    base = dict(inputs=12, hidden=10, classes=3, max_delay=20, delay_init=(1.0, 15.0), tau=2.0,
                threshold=1.0, surrogate="triangle", surrogate_scale=1.0, sigma=1.5, radius=3.0,
                input_gain=4.0, signal="sample", loss="ce")
    base.update(kw)
    return OnlineConfig(**base)


def data(c, T=40, B=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, c.inputs, generator=g) < 0.25).to(torch.int64)
    labels = torch.randint(0, c.classes, (B,), generator=g)
    return x, labels


def cosine(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("kw", [
    dict(input_delays="axonal"),
    dict(input_delays="synaptic"),
    dict(input_delays="axonal", reset="hard"),
    dict(input_delays="synaptic", recurrent=True, recurrent_delays="axonal", recurrent_gain=2.0),
])
def test_fixed_rule_tracks_float_rule(kw):
    c = config(**kw)
    fixed = FixedOnlineNetwork(c, SPEC, seed=1)
    flt = fixed.to_float()
    x, labels = data(c)
    rf = fixed.run(x, labels, record=True)
    rd = flt.run(x.double(), labels, record=True)
    agree = float((rf["spikes"] == rd["spikes"].to(torch.int64)).double().mean())
    assert float(rf["spikes"].double().mean()) > 0.02
    assert agree >= 0.97, agree
    acc = fixed.accumulators(x, labels)
    grads = flt.gradients(x.double(), labels)
    for name in ("w_in", "d_in", "w_out") + (("d_rec", "w_rec") if c.recurrent else ()):
        sim = cosine(acc[name], grads[name])
        assert sim >= 0.9, f"{name}: cosine {sim:.3f}"


def test_step_signal_on_chip_tracks_float_mse():
    c = config(input_delays="axonal", signal="step", loss="mse")
    fixed = FixedOnlineNetwork(c, SPEC, seed=2)
    flt = fixed.to_float()
    x, labels = data(c, seed=2)
    acc = fixed.accumulators(x, labels)
    grads = flt.gradients(x.double(), labels)
    for name in ("w_in", "d_in", "w_out"):
        assert cosine(acc[name], grads[name]) >= 0.9, name


def test_learning_changes_state_within_ranges():
    spec = SPEC
    c = config(input_delays="synaptic")
    net = FixedOnlineNetwork(c, spec, LearningRates(lr_delay_shift=20, lr_weight_shift=12), seed=3)
    before = {n: p.clone() for n, p in net.parameters().items()}
    x, labels = data(c, seed=3)
    net.run(x, labels, learn=True)
    assert not torch.equal(before["d_in"], net.d_in)
    assert not torch.equal(before["w_in"], net.w_in)
    assert int(net.d_in.min()) >= 0 and int(net.d_in.max()) <= spec.delay_max
    wmax = 2 ** (spec.weight_bits + spec.weight_frac_bits - 1)
    assert int(net.w_in.abs().max()) <= wmax


def test_deterministic_and_stochastic_rounding_reproducible():
    c = config(input_delays="axonal")
    x, labels = data(c)
    runs = []
    for _ in range(2):
        net = FixedOnlineNetwork(c, SPEC, LearningRates(stochastic=True, lr_delay_shift=30), seed=4)
        net.run(x, labels, learn=True)
        runs.append(net.d_in.clone())
    assert torch.equal(runs[0], runs[1])
    det = FixedOnlineNetwork(c, SPEC, LearningRates(lr_delay_shift=30), seed=4)
    det.run(x, labels, learn=True)
    assert not torch.equal(det.d_in, runs[0])  # the LFSR changed some roundings


def test_external_signal_checked():
    c = config(input_delays="axonal")
    net = FixedOnlineNetwork(c, SPEC)
    x, _ = data(c, B=2)
    with pytest.raises(ValueError, match=r"Learning signal -200..-200 outside the 8-bit range -128..127"):
        net.run(x, learn=True, signal=torch.full((2, c.hidden), -200))
    with pytest.raises(ValueError, match=r"Learning signal must have shape \[2, 10\]"):
        net.run(x, learn=True, signal=torch.zeros(2, 11, dtype=torch.int64))
    before = net.d_in.clone()
    net.run(x, learn=True, signal=torch.zeros(2, c.hidden, dtype=torch.int64))
    assert torch.equal(before, net.d_in)  # no signal, no delay change


def test_spec_helpers():
    lut = gaussian_derivative_lut(1.5, 3.0, 6, 8)
    R = (len(lut) - 1) // 2
    assert lut[R] == 0 and max(lut) == 127 and all(lut[R + i] == -lut[R - i] for i in range(R + 1))
    assert rshift_round(5, 1) == 3 and rshift_round(-5, 1) == -2 and rshift_round(7, 0) == 7
    assert sat(200, 8) == 127 and sat(-200, 8) == -128
    lfsr = Lfsr16(1)
    draws = [lfsr.draw(4) for _ in range(4096)]
    assert 6.5 < sum(draws) / len(draws) < 8.5
    assert forward_delay(SPEC.delay_max, SPEC.delay_frac_bits) == 63
    with pytest.raises(ValueError, match="Threshold must be in 1..32767, not 40000"):
        FixedOnlineNetwork(config(), SPEC, theta=40000)
    with pytest.raises(ValueError, match="Maximum delay 70 exceeds the chip's D - 1 = 63"):
        FixedOnlineNetwork(config(max_delay=70), SPEC)


def test_equivalent_shifts_follow_the_float_rates():
    c = config(lr_weight=0.5, lr_delay=100.0, lr_readout=0.001)
    base = FixedOnlineNetwork.equivalent_shifts(c, SPEC, batch=4)
    doubled = FixedOnlineNetwork.equivalent_shifts(c, SPEC, batch=8)
    assert {k: doubled[k] - base[k] for k in base} == {k: 1 for k in base}  # batch sums: one more bit
    faster = FixedOnlineNetwork.equivalent_shifts(config(lr_weight=2.0, lr_delay=400.0, lr_readout=0.004),
                                                  SPEC, batch=4)
    assert {k: base[k] - faster[k] for k in base} == {k: 2 for k in base}


def test_fixed_point_training_run(tmp_path):
    from delrec.golden.online_training import make_online_configs, train_online
    from delrec.golden.tasks.base import load_task

    task = load_task("delayed-xor", train_size=64, val_size=32, test_size=32)
    net, train = make_online_configs(task, dict(hidden=8, epochs=2, batch_size=16, arithmetic="fixed",
                                                 sigma=2.0, sigma_final=1.0, readout_bias=False))
    metrics = train_online(net, train, tmp_path / "run", progress=False, task=task)
    assert metrics["arithmetic"] == "fixed" and metrics["spec"]["lr_delay_shift"] > 0
    assert len(metrics["history"]) == 2 and (tmp_path / "run" / "run.png").stat().st_size > 0
    with pytest.raises(ValueError, match="Arithmetic must be 'float' or 'fixed', not 'double'"):
        make_online_configs(task, dict(arithmetic="double"))
    # a shell that ate the quotes of --set 'spec={"feedback_frac_bits": 4}' hands over a string
    with pytest.raises(ValueError, match="spec must be a JSON object of fixed-point settings"):
        make_online_configs(task, dict(spec="{feedback_frac_bits:4}"))
    with pytest.raises(ValueError, match=r"Unknown fixed-point setting\(s\) \['feedback_bits'\]"):
        make_online_configs(task, dict(spec={"feedback_bits": 4}))
    fixed = make_online_configs(task, dict(arithmetic="fixed", spec={"feedback_frac_bits": 4}))[1]
    plain = make_online_configs(task, dict(spec={"feedback_frac_bits": 4}))[1]
    assert fixed.spec == {"feedback_frac_bits": 4} and plain.spec == {}


@pytest.mark.parametrize("kw", [
    dict(input_delays="synaptic"),
    dict(input_delays="axonal"),    # factored delay traces: a shift of weight_bits - 1 more
    dict(input_delays="axonal", signal="step", loss="mse"),
])
def test_applied_updates_match_float_rates_for_every_parameter(kw):
    """One batch learned in fixed point moves every parameter as the float rule would
    (same direction, magnitude within the factor sqrt(2) of the power-of-two shifts)."""
    import copy

    from delrec.golden.online_training import OnlineTrainConfig, make_rule

    c = config(lr_weight=0.5, lr_delay=100.0, lr_readout=0.02, readout_bias=True, **kw)
    spec, rates, theta = make_rule(c, OnlineTrainConfig(batch_size=8))
    fx = FixedOnlineNetwork(copy.deepcopy(c), spec, rates, seed=5, theta=theta)
    fl = fx.to_float()
    fl.config = copy.deepcopy(c)
    x, labels = data(c, seed=5)
    before_q = {n: p.clone() for n, p in fx.to_float().named_parameters()}
    before_f = {n: p.clone() for n, p in fl.named_parameters()}
    fx.run(x, labels, learn=True)
    fl.run(x.double(), labels, learn=True)
    after_q = dict(fx.to_float().named_parameters())  # what the chip computes with now
    for n in ("w_in", "d_in", "bias", "w_out", "b_out"):
        dq = after_q[n] - before_q[n]
        df = getattr(fl, n) - before_f[n]
        ratio = float(dq.norm() / df.norm())
        assert 0.5 <= ratio <= 2.0, f"{n}: fixed/float update ratio {ratio:.3f}"
        assert cosine(dq, df) >= 0.9, n


@pytest.mark.parametrize("kw", [
    dict(input_delays="synaptic"),
    dict(input_delays="axonal"),
    dict(input_delays="axonal", signal="step", loss="mse"),
])
def test_chip_rates_make_the_float_rule_learn_at_the_fixed_point_rates(kw):
    """The float rule at the rates of the chip's shifts (``chip_rates``) moves every parameter
    as far as the fixed-point rule does; at its own rates it misses by the shifts' rounding."""
    import copy

    from delrec.golden.online_training import OnlineTrainConfig, _set_epoch, applied_rates, make_rule

    c = config(lr_weight=0.323, lr_delay=56.0, lr_readout=0.024, readout_bias=True, **kw)
    train = OnlineTrainConfig(batch_size=8, chip_rates=True)
    spec, rates, _ = make_rule(c, train)
    factors = FixedOnlineNetwork.chip_rate_factors(c, spec, rates, batch=8)
    assert all(2 ** -0.5 <= f <= 2 ** 0.5 for f in factors.values()), factors
    assert all(abs(f - 1) > 0.2 for f in factors.values()), factors  # these rates round visibly
    fixed_rates = applied_rates(c, OnlineTrainConfig(batch_size=8, arithmetic="fixed"))
    assert applied_rates(c, train) == fixed_rates == {k: getattr(c, k) * f for k, f in factors.items()}
    assert applied_rates(c, OnlineTrainConfig(batch_size=8)) == \
        {k: getattr(c, k) for k in ("lr_weight", "lr_delay", "lr_readout")}

    fx = FixedOnlineNetwork(copy.deepcopy(c), spec, rates, seed=5)
    x, labels = data(c, seed=5)
    before = {n: p.clone() for n, p in fx.to_float().named_parameters()}
    fx.run(x, labels, learn=True)
    dq = {n: p - before[n] for n, p in fx.to_float().named_parameters()}
    for chip in (False, True):
        fl = FixedOnlineNetwork(copy.deepcopy(c), spec, rates, seed=5).to_float()
        fl.config = copy.deepcopy(c)
        _set_epoch(fl, c, OnlineTrainConfig(batch_size=8, chip_rates=chip))  # as train_online does
        fl.run(x.double(), labels, learn=True)
        for n, factor in (("w_in", "lr_weight"), ("d_in", "lr_delay"), ("w_out", "lr_readout")):
            ratio = float(dq[n].norm() / (getattr(fl, n) - before[n]).norm())
            expected = 1.0 if chip else factors[factor]
            assert abs(ratio / expected - 1) < 0.08, f"{n} (chip_rates={chip}): ratio {ratio:.3f}"


def test_chip_rates_setting():
    from delrec.golden.online_training import OnlineTrainConfig, make_online_configs
    from delrec.golden.tasks.base import load_task

    task = load_task("delayed-xor", train_size=32, val_size=32, test_size=32)
    spec = {"feedback_frac_bits": 4}
    flt = make_online_configs(task, dict(chip_rates=True, spec=spec))[1]
    assert flt.chip_rates and flt.spec == spec          # the shifts depend on the spec: kept
    fixed = make_online_configs(task, dict(chip_rates=True, spec=spec, arithmetic="fixed"))[1]
    assert fixed == make_online_configs(task, dict(spec=spec, arithmetic="fixed"))[1]  # same run
    with pytest.raises(ValueError, match="chip_rates must be true or false, not 'yes'"):
        OnlineTrainConfig(chip_rates="yes")


def test_updates_every_k_steps():
    """``update_every`` in fixed point: k >= T is one update at the end; k = 1 updates every
    step, so later steps run on changed parameters, and moves them as the float rule does."""
    import copy

    from delrec.golden.online_training import OnlineTrainConfig, make_rule

    base = config(input_delays="axonal", signal="step", loss="mse", lr_weight=0.5, lr_delay=100.0,
                  lr_readout=0.02, readout_bias=True)
    spec, rates, _ = make_rule(base, OnlineTrainConfig(batch_size=8))
    x, labels = data(base, T=30, seed=6)

    def learned(every):
        c = copy.deepcopy(base)
        c.update_every = every
        net = FixedOnlineNetwork(c, spec, rates, seed=6)
        result = net.run(x, labels, learn=True)
        return net, result

    end, r_end = learned(0)
    for every in (30, 45):   # T % 30 == 0 applies inside the loop, 45 after it: the same update
        net, r = learned(every)
        assert all(torch.equal(p, end.parameters()[n]) for n, p in net.parameters().items())
        assert torch.equal(r["outputs"], r_end["outputs"]) and r["peaks"] == r_end["peaks"]
    # the accumulators of a sample are the same whatever the update interval (nothing applied)
    acc0 = FixedOnlineNetwork(base, spec, rates, seed=6).accumulators(x, labels)
    c7 = copy.deepcopy(base)
    c7.update_every = 7
    acc7 = FixedOnlineNetwork(c7, spec, rates, seed=6).accumulators(x, labels)
    assert all(torch.equal(acc0[n], acc7[n]) for n in acc0)

    step, r_step = learned(1)
    assert torch.equal(r_step["outputs"][0], r_end["outputs"][0])    # step 0 runs before any update
    assert not torch.equal(r_step["outputs"][1:], r_end["outputs"][1:])
    # against the float rule updating every step from the same start
    start = FixedOnlineNetwork(step.config, spec, rates, seed=6)
    fl = start.to_float()
    fl.config = copy.deepcopy(step.config)
    before = {n: p.clone() for n, p in fl.named_parameters()}
    fl.run(x.double(), labels, learn=True)
    after_q = dict(step.to_float().named_parameters())
    for n in ("w_in", "d_in", "w_out"):
        dq, df = after_q[n] - before[n], getattr(fl, n) - before[n]
        assert 0.5 <= float(dq.norm() / df.norm()) <= 2.0, n
        assert cosine(dq, df) >= 0.9, n


def test_feedback_fraction_bits_refine_the_broadcast_signal():
    """``feedback_frac_bits`` reads the readout weights' learning copy below the forward bits."""
    import dataclasses
    import math

    config = OnlineConfig(inputs=4, hidden=3, classes=2, signal="sample", sigma=1.0)
    net = FixedOnlineNetwork(config, SPEC, seed=0)
    net.w_out = torch.tensor([[300, -70, 5], [-1, 129, 255]], dtype=torch.int64)  # [K, N]
    err = torch.tensor([[100, -50]], dtype=torch.int64)
    exact = (err.double() @ net.w_out.double()) / 2 ** 15     # w / 2^(frac + weight_bits - 1)
    coarse = net._broadcast(err)
    net.spec = dataclasses.replace(net.spec, feedback_frac_bits=8)
    fine = net._broadcast(err)
    assert fine.tolist() == [[math.floor(v + 0.5) for v in exact[0].tolist()]]
    # the forward bits alone floor -70 to -1 and 5 to 0: a different signal
    assert coarse.tolist() != fine.tolist()
    with pytest.raises(ValueError, match=r"Feedback fraction bits must be in 0..8"):
        CoreSpec(weight_frac_bits=8, feedback_frac_bits=9)
