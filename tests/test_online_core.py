"""The online-learning core (RTL) against the fixed-point three-factor rule, bit for bit."""

import numpy as np
import pytest
import torch

from delrec.arith import CoreSpec, LearningRates
from delrec.firmware.online import check_supported, parameter_writes, signal_beats
from delrec.golden.online import OnlineConfig
from delrec.golden.online_fixed import ONLINE_SPEC, FixedOnlineNetwork
from delrec.hw.online_core import OnlineCore
from delrec.hw.online_ports import OnlineArithmetic, OnlineGeometry, SignalKind

ARITH = OnlineArithmetic(ONLINE_SPEC, theta=128, leak_shift=1)
from delrec.sim.online_cosim import OnlineSample, cosimulate_online, random_online_case

MAX_REACH = 256  # LUTs up to sigma = 1.33 (radius 3, 6 fractional delay bits)


@pytest.mark.parametrize("kind", ["synaptic", "axonal"])
def test_random_networks_learn_bit_exact(kind, tmp_path):
    """Every spike, membrane, output, score, trace, eligibility sum, signal, weight and delay."""
    rng = np.random.default_rng(7 if kind == "synaptic" else 8)
    net, samples = random_online_case(kind, rng)
    before = {n: p.clone() for n, p in net.parameters().items()}
    result = cosimulate_online(net, samples, stall=0.3, seed=3, max_reach=MAX_REACH,
                               work_dir=tmp_path)
    changed = [n for n, p in result.golden.parameters().items() if not torch.equal(p, before[n])]
    assert changed, "the samples must change some parameter for the comparison to mean anything"
    assert all(c is not None and c > 0 for c in result.update_cycles)
    assert len(result.step_cycles) == len(samples)


@pytest.mark.parametrize("seed, recurrent", [(11, False), (12, False), (21, True), (22, True)])
def test_per_step_core_learns_every_step_bit_exact(seed, recurrent, tmp_path):
    """Per-step signal from the label: after every step, the delay traces, signals, delays and readout.

    Feedforward and recurrent (the layer's spikes through learnable axonal
    delays). Without stalls the cycles of every step equal the documented
    count (:func:`delrec.hw.online_ports.step_cycles` with ``step_update``).
    """
    rng = np.random.default_rng(seed)
    net, samples = random_online_case("axonal", rng, signal="step", recurrent=recurrent)
    samples.append(OnlineSample(x=samples[0].x, label=samples[0].label, learn=False))
    before = {n: p.clone() for n, p in net.parameters().items()}
    result = cosimulate_online(net, samples, stall=0.0 if seed % 2 else 0.3, seed=seed,
                               max_reach=MAX_REACH, work_dir=tmp_path)
    after = result.golden.parameters()
    assert not torch.equal(after["d_in"], before["d_in"]) and not torch.equal(after["w_out"], before["w_out"])
    assert torch.equal(after["w_in"], before["w_in"])          # input weights stay
    if recurrent:
        assert not torch.equal(after["d_rec"], before["d_rec"])
        assert torch.equal(after["w_rec"], before["w_rec"])
    # learning steps that count cost more than the same sample's inference (the last one)
    assert np.mean(result.step_cycles[0]) > np.mean(result.step_cycles[-1])


def test_label_is_checked():
    from delrec.firmware.online import label_writes

    g = OnlineGeometry(4, 4, 3, ARITH, "axonal", 64, 100, 4, "step")
    assert label_writes(g, 2).tolist() == [[6, 6, 2]]
    with pytest.raises(ValueError, match=r"Label 3 is outside the core's classes 0..2"):
        label_writes(g, 3)


def test_delays_learn_from_errors_and_inference_matches(tmp_path):
    """Delays only (axonal factorisation off: synaptic), then inference with learning off."""
    config = OnlineConfig(inputs=4, hidden=3, classes=2, input_delays="synaptic", signal="sample",
                          sigma=1.0, delay_init=(0.0, 12.0), learn_weights=False, input_gain=8.0)
    net = FixedOnlineNetwork(config, rates=LearningRates(lr_delay_shift=10, lr_readout_shift=3), seed=2)
    rng = np.random.default_rng(1)
    xs = [(rng.random((16, 4)) < 0.4).astype(np.int64) for _ in range(4)]
    samples = [OnlineSample(x=xs[0], label=0), OnlineSample(x=xs[1], label=1),
               OnlineSample(x=xs[2], label=1, learn=False), OnlineSample(x=xs[3], label=0)]
    result = cosimulate_online(net, samples, stall=0.1, seed=5, max_reach=MAX_REACH,
                               work_dir=tmp_path)
    assert not torch.equal(result.golden.d_in, net.d_in)
    assert torch.equal(result.golden.w_in, net.w_in)  # weights do not learn
    assert result.update_cycles[2] is None
    # learning off costs no learning cycles: the inference-only step is the shorter one
    assert np.mean(result.step_cycles[2]) < np.mean(result.step_cycles[1])


def test_unsupported_networks_are_named():
    spec = ONLINE_SPEC
    with pytest.raises(ValueError, match="recurrent=True with a per-sample signal"):
        check_supported(OnlineConfig(recurrent=True, signal="sample"), spec)
    with pytest.raises(ValueError, match="reset='hard'"):
        check_supported(OnlineConfig(reset="hard"), spec)
    step = dict(signal="step", input_delays="axonal", update_every=1, learn_weights=False)
    check_supported(OnlineConfig(**step), spec)   # the per-step core's networks
    check_supported(OnlineConfig(**step, recurrent=True, recurrent_delays="axonal"), spec)
    with pytest.raises(ValueError, match="recurrent_delays='synaptic'"):
        check_supported(OnlineConfig(**step, recurrent=True, recurrent_delays="synaptic"), spec)
    with pytest.raises(ValueError, match="A recurrent layer is built with a per-step"):
        OnlineGeometry(4, 4, 2, ARITH, "axonal", 64, 100, 4, "sample", recurrent=True)
    for change, text in ((dict(update_every=0), "update_every=0 with a per-step signal"),
                         (dict(input_delays="synaptic"), "input_delays='synaptic' with a per-step"),
                         (dict(learn_weights=True), "learn_weights=True with a per-step signal"),
                         (dict(feedback="random"), "feedback='random' with a per-step signal")):
        with pytest.raises(ValueError, match=text):
            check_supported(OnlineConfig(**dict(step, **change)), spec)
    with pytest.raises(ValueError, match="per-step learning signal is built for axonal delays"):
        OnlineGeometry(4, 4, 2, ARITH, "synaptic", 64, 100, 4, "step")
    with pytest.raises(ValueError, match="Signal mode must be one of"):
        OnlineGeometry(4, 4, 2, ARITH, "axonal", 64, 100, 4, "epoch")
    with pytest.raises(ValueError, match="stochastic"):
        check_supported(OnlineConfig(signal="sample"), spec, LearningRates(stochastic=True))
    with pytest.raises(ValueError, match="leak='multiply'"):
        check_supported(OnlineConfig(signal="sample"), CoreSpec())
    with pytest.raises(ValueError, match="Delay kind"):
        OnlineGeometry(4, 4, 2, ARITH, "dendritic", 64, 100, 4)
    with pytest.raises(ValueError, match="Maximum steps must be a positive integer, not 0"):
        OnlineGeometry(4, 4, 2, ARITH, "synaptic", 64, 0, 4)


def test_bad_host_input_is_rejected_with_its_value_and_limit():
    config = OnlineConfig(inputs=4, hidden=3, classes=2, signal="sample", sigma=1.0)
    net = FixedOnlineNetwork(config, seed=0)
    from delrec.firmware.online import online_geometry

    g = online_geometry(net, max_reach=MAX_REACH)
    with pytest.raises(ValueError, match=r"Learning signal\[1\] = 200 is outside the core's range \[-128, 127\]"):
        signal_beats(g, [0, 200], SignalKind.ERROR)
    with pytest.raises(ValueError, match="A NEURON signal has 3 values, not 2"):
        signal_beats(g, [0, 1], SignalKind.NEURON)
    net.d_in[0, 0] = g.spec.delay_max + 1
    with pytest.raises(ValueError, match=rf"Delay\[0, 0\] = {g.spec.delay_max + 1} is outside the core's range \[0, {g.spec.delay_max}\]"):
        parameter_writes(net, g)
    net.d_in[0, 0] = 0
    x = np.zeros((10, 4), np.int64)
    x[3, 1] = 16
    with pytest.raises(ValueError, match="event count 16 outside the core's 0..15"):
        cosimulate_online(net, [OnlineSample(x=x, label=0)], max_reach=MAX_REACH)
    with pytest.raises(ValueError, match="300 steps, more than the core's max_steps 255"):
        cosimulate_online(net, [OnlineSample(x=np.zeros((300, 4), np.int64), label=0)],
                          max_reach=MAX_REACH)
    with pytest.raises(ValueError, match="neither a label nor a signal"):
        cosimulate_online(net, [OnlineSample(x=np.zeros((5, 4), np.int64))], max_reach=MAX_REACH)


def test_guards_drop_and_count_bad_beats_without_touching_state():
    """Events on missing channels or past the count width, signal beats for missing neurons or
    classes, steps past ``max_steps`` while learning, writes outside a target: all dropped,
    counted, and the state is what it would be without them."""
    from amaranth.sim import Simulator

    from delrec.hw.online_ports import (OnlineConfigRegister as R, OnlineCounter, OnlineFlag,
                                        OnlineReadTarget as RT, OnlineWriteTarget as WT)

    core = OnlineCore(inputs=3, neurons=3, classes=2, spec=ARITH, max_reach=64, max_steps=2, count_bits=4)
    g = core.geometry
    seen = {}

    async def put(ctx, stream, **fields):
        for name, value in fields.items():
            ctx.set(getattr(stream.payload, name), value)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)

    async def get(ctx, stream, *names):
        ctx.set(stream.ready, 1)
        while True:
            _, _, valid, *values = await ctx.tick().sample(
                stream.valid, *(getattr(stream.payload, n) for n in names))
            if valid:
                ctx.set(stream.ready, 0)
                return values

    async def write(ctx, target, addr, data):
        await put(ctx, core.write, target=target, addr=addr, data=data & ((1 << g.write_data_bits) - 1))

    async def read(ctx, target, addr, bits=None):
        await put(ctx, core.read, target=target, addr=addr)
        value, = await get(ctx, core.read_data, "data")
        value = int(value)
        return value - (1 << bits) if bits and value >> (bits - 1) else value

    async def step(ctx, channels):
        for c in channels:
            await put(ctx, core.inputs, channel=c, last=0)
        await put(ctx, core.inputs, channel=0, last=1)
        spikes = []
        while True:
            neuron, last = await get(ctx, core.spikes, "neuron", "last")
            if last:
                return spikes
            spikes.append(int(neuron))

    async def testbench(ctx):
        await write(ctx, WT.W_IN, 0, 1 << 8)          # neuron 0 <- channel 0, forward weight 1
        await write(ctx, WT.W_OUT, g.classes * g.neurons, 99)  # outside W_OUT: dropped
        await write(ctx, WT.CONFIG, R.FLAGS, OnlineFlag.LEARN)
        seen["flags"] = await read(ctx, RT.CONFIG, R.FLAGS)
        await write(ctx, WT.CLEAR, 0, 0)
        await step(ctx, [0] * 16 + [3])                 # 16th event overflows; channel 3 missing
        seen["membrane"] = await read(ctx, RT.MEMBRANE, 0, g.spec.v_bits)
        seen["dropped"] = await read(ctx, RT.COUNTER, OnlineCounter.DROPPED_EVENTS)
        await put(ctx, core.signal, kind=SignalKind.ERROR, index=2, value=5, last=0)
        await put(ctx, core.signal, kind=SignalKind.NEURON, index=3, value=5, last=0)
        seen["bad"] = await read(ctx, RT.COUNTER, OnlineCounter.BAD_SIGNALS)
        seen["signals"] = [await read(ctx, RT.SIGNAL, i) for i in range(3)]
        seen["outside"] = await read(ctx, RT.W_OUT, g.classes * g.neurons)
        await step(ctx, [])
        seen["refused"] = await step(ctx, [0])          # the third step while learning
        seen["steps"] = await read(ctx, RT.COUNTER, OnlineCounter.STEPS)
        seen["overruns"] = await read(ctx, RT.COUNTER, OnlineCounter.OVERRUNS)
        seen["membrane_after"] = await read(ctx, RT.MEMBRANE, 0, g.spec.v_bits)

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["flags"] == OnlineFlag.LEARN
    assert seen["membrane"] == 15        # fifteen events counted, leak of zero
    assert seen["dropped"] == 2
    assert seen["bad"] == 2 and seen["signals"] == [0, 0, 0]
    assert seen["outside"] == 0
    assert seen["refused"] == [] and seen["steps"] == 2 and seen["overruns"] == 1
    assert seen["membrane_after"] == 15 - (15 >> 1)  # one silent step of leak, the refused one none


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["synaptic", "axonal"])
def test_many_random_networks_learn_bit_exact(kind, tmp_path):
    """Eight random networks per delay kind, four learning samples each, under stalls."""
    rng = np.random.default_rng(100 if kind == "synaptic" else 200)
    for n in range(8):
        net, samples = random_online_case(kind, rng, samples=4)
        cosimulate_online(net, samples, stall=0.25, seed=n, max_reach=MAX_REACH,
                          work_dir=tmp_path / str(n))
