"""The one core learning on chip (Verilator): bit-exact with the fixed-point three-factor rule.

After every step that learns, the testbench reads back every trace, learning
signal, input and recurrent delay, readout weight and readout bias, and
every membrane, readout value and score, and compares them with
:class:`delrec.golden.online_fixed.FixedOnlineNetwork` (:mod:`delrec.sim.learning`).
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from delrec.arith import CoreSpec, LearningRates, tap_range
from delrec.build import CoreBuild
from delrec.firmware.compiler import compile_network, rule_writes
from delrec.golden.online import OnlineConfig
from delrec.golden.online_fixed import ONLINE_SPEC, FixedOnlineNetwork
from delrec.hw.core import InferenceCore
from delrec.sim.learning import LearningSample, cosimulate_learning, learning_build, random_learning_case


@pytest.mark.parametrize("recurrent, reset, leak, lanes, stall, shared", [
    (False, "soft", "shift", 1, 0.3, False),
    (True, "soft", "shift", 2, 0.0, False),
    (True, "hard", "multiply", 1, 0.3, False),   # DelRec's neurons: Q0.8 leak at tau = 1.05, hard reset
    (True, "hard", "multiply", 2, 0.2, False),
    (True, "hard", "multiply", 1, 0.3, True),    # the UP5K's layout: weights and history in one memory
], ids=["feedforward-soft-shift", "recurrent-soft-shift-p2", "recurrent-hard-multiply",
        "recurrent-hard-multiply-p2", "recurrent-hard-multiply-shared-memory"])
def test_random_networks_learn_every_step_bit_exact(recurrent, reset, leak, lanes, stall, shared, tmp_path):
    rng = np.random.default_rng(zlib.crc32(f"{recurrent}-{reset}-{leak}-{lanes}-{shared}".encode()))
    net, samples = random_learning_case(rng, recurrent=recurrent, reset=reset, leak=leak)
    before = {n: p.clone() for n, p in net.parameters().items()}
    build = dataclasses.replace(learning_build(net, lanes=lanes, max_reach=4 * net.reach), shared_memory=shared)
    result = cosimulate_learning(net, samples, build=build, stall=stall, seed=int(rng.integers(1 << 16)),
                                 work_dir=tmp_path)
    after = result.golden.parameters()
    learned = ["d_in", "w_out"] + (["d_rec"] if recurrent else [])
    for name in learned:
        assert not torch.equal(after[name], before[name]), f"{name} did not learn: the comparison means nothing"
    for name in ("w_in", "bias") + (("w_rec",) if recurrent else ()):
        assert torch.equal(after[name], before[name]), f"{name} must not learn on chip"
    assert result.learned == [True] * (len(samples) - 1) + [False]


def test_trained_delrec_network_keeps_learning_on_chip(tmp_path):
    """A DelRec network trained with BPTT, quantized with learning fractions, learns its input
    delays, recurrent delays and readout on the core, bit-exact with the golden rule."""
    from delrec.golden.fixed import quantize
    from delrec.golden.online_fixed import LEARNING_SPEC, image_learning_config
    from delrec.golden.tasks.base import load_task
    from delrec.golden.training import build_model, load_checkpoint, make_configs, train

    task = load_task("delayed-xor", train_size=128, val_size=32, test_size=32)
    model_cfg, train_cfg = make_configs(task, dict(hidden=[12], epochs=2, batch_size=32))
    train(model_cfg, train_cfg, tmp_path / "run", task=task, progress=False)
    image = quantize(build_model(load_checkpoint(tmp_path / "run" / "checkpoint.pt")), LEARNING_SPEC)
    assert image.spec.leak == "multiply" and image.reset == "hard" and image.readout_leak > 0
    config = image_learning_config(image, sigma=1.0)
    net = FixedOnlineNetwork.from_image(image, config, LearningRates(lr_delay_shift=20, lr_readout_shift=3),
                                        target=int(round(image.meta["readout_scale"])))
    samples = [LearningSample(x=task.train[n][0].numpy().astype(np.int64), label=int(task.train[n][1]))
               for n in range(2)]
    result = cosimulate_learning(net, samples, stall=0.2, seed=4, work_dir=tmp_path / "sim")
    after, before = result.golden.parameters(), net.parameters()
    for name in ("d_in", "d_rec", "w_out"):
        assert not torch.equal(after[name], before[name]), name
    # what the core learned is an image again: the next network to deploy
    learned = result.golden.to_image()
    assert learned.input_delays is not None and not np.array_equal(learned.delays, image.delays)


def test_learning_step_cycles_match_the_documented_count(tmp_path):
    """Silent steps (no input, no spike): exactly the inference count plus
    :meth:`InferenceCore.learning_cycles`, before and after ``loss_start``."""
    C, N, K, P = 4, 8, 3, 2
    config = OnlineConfig(inputs=C, hidden=N, classes=K, input_delays="axonal", signal="step",
                          update_every=1, recurrent=True, recurrent_delays="axonal", sigma=1.0,
                          radius=3.0, delay_init=(0.0, 12.0), learn_weights=False, readout_bias=True,
                          loss_start=3, max_delay=15)
    spec = dataclasses.replace(ONLINE_SPEC, delay_bits=4)
    net = FixedOnlineNetwork(config, spec, LearningRates(lr_delay_shift=16, lr_readout_shift=3), seed=3)
    build = learning_build(net, lanes=P)
    T = 8
    result = cosimulate_learning(net, [LearningSample(x=np.zeros((T, C), np.int64), label=1)], build=build,
                                 stall=0.0, check_state=False, work_dir=tmp_path)
    f, R, B = spec.delay_frac_bits, net.reach, N // P
    delays = [(int(d), 0) for d in net.d_in] + [(int(d), 1) for d in net.d_rec]
    inference = 3 * B + K + 20 + 4 * C
    for t, cycles in enumerate(result.cycles[0]):
        taps = [max(0, tap_range(d, R, f, t, offset)[1] - tap_range(d, R, f, t, offset)[0] + 1)
                for d, offset in delays]
        extra = InferenceCore.learning_cycles(build, taps=taps, channels=C + N, signal=t >= 3, readout_bias=True,
                                              lr_delay_shift=net.rates.lr_delay_shift)
        assert cycles == inference + extra, f"step {t}: {cycles} cycles, documented {inference + extra}"


def test_rules_and_images_the_core_cannot_run_are_refused_by_name():
    base = dict(inputs=4, hidden=4, classes=2, input_delays="axonal", signal="step", update_every=1,
                learn_weights=False, sigma=1.0, delay_init=(0.0, 5.0))
    problems = [
        (dict(signal="sample", update_every=0), "signal='sample'"),
        (dict(update_every=0), "update_every=0"),
        (dict(learn_weights=True), "learn_weights=True"),
        (dict(input_delays="synaptic"), "input_delays='synaptic'"),
        (dict(reset="hard"), "reset='hard' with gate_traces=True"),
        (dict(feedback="random"), "feedback='random'"),
    ]
    for change, text in problems:
        net = FixedOnlineNetwork(OnlineConfig(**dict(base, **change)), seed=0)
        with pytest.raises(ValueError, match=re.escape(f"The core's learning unit cannot run this rule: {text}")):
            net.rule()
    net = FixedOnlineNetwork(OnlineConfig(**base), rates=LearningRates(stochastic=True), seed=0)
    with pytest.raises(ValueError, match="stochastic rounding"):
        net.rule()
    net = FixedOnlineNetwork(OnlineConfig(**base), seed=0)
    rule = net.rule()
    small = learning_build(net, max_reach=rule.reach - 1)
    with pytest.raises(ValueError, match=f"The table's reach {rule.reach} exceeds the core's max_reach "
                                         f"{rule.reach - 1}"):
        rule_writes(rule, small)
    with pytest.raises(ValueError, match="This core build has no learning unit"):
        rule_writes(rule, CoreBuild(4, 4, 2, net.spec))
    no_inputs = CoreBuild(4, 4, 2, net.spec, queue="history", learning="step", max_reach=rule.reach)
    with pytest.raises(ValueError, match="The rule learns input delays; this core build has none"):
        rule_writes(rule, no_inputs)
    with pytest.raises(ValueError, match="this core build has none: build it with input_delays='axonal'"):
        compile_network(net.to_image(), no_inputs)
    build = learning_build(net)
    with pytest.raises(ValueError, match=r"An input channel may carry 16 events in one step; the core's input "
                                         r"history counts at most 15 \(count_bits = 4\)"):
        compile_network(net.to_image(), build, max_input=16)


def test_history_depth_covers_every_tap():
    """A learning build keeps the spike and input histories long enough for the widest table."""
    spec = CoreSpec(delay_frac_bits=6, weight_frac_bits=8)
    for reach in (1, 64, 768, 1500):
        build = CoreBuild(3, 4, 2, spec, queue="history", learning="step", max_reach=reach)
        longest = spec.depth - 1 + -(-reach >> 6) + 1     # the last tap of the largest delay, recurrent
        assert build.history_depth >= longest + 2 and build.history_depth & (build.history_depth - 1) == 0


@pytest.mark.slow
def test_core_learns_delayed_xor_as_the_golden_rule_does(tmp_path):
    """The acceptance run of ``delrec learn-on-core``: the one core learns the on-chip delayed-xor
    from untrained delays, every step; its accuracies are those of ``delrec train --learning
    three-factor`` in fixed point with the same seed and a batch of one, epoch by epoch (about
    10 minutes; measured: 52.3 % untrained, 60.9 % after four epochs)."""
    from delrec.golden.online_training import train_online
    from delrec.golden.tasks.base import load_task
    from delrec.sim.online_learning import ONCHIP_TASK_OPTIONS, learn_on_core, onchip_configs

    task = load_task("delayed-xor", **ONCHIP_TASK_OPTIONS)
    config, train = onchip_configs(task, {"seed": 0, "task_options": ONCHIP_TASK_OPTIONS})
    onchip = learn_on_core(task, config, train, out_dir=tmp_path / "core", progress=False)
    golden = train_online(config, train, tmp_path / "golden", progress=False, task=task)
    assert onchip["eval_accuracy"] == [h["val_accuracy"] for h in golden["history"]]
    assert onchip["test_accuracy"] == golden["test_accuracy"]
    assert onchip["eval_accuracy"][-1] >= onchip["untrained_accuracy"] + 0.05
    assert onchip["delays"]["d_in"]["moved_one_step_or_more"] > 0


def test_learn_on_core_learns_every_step_as_the_golden_rule_does(tmp_path):
    """``delrec learn-on-core`` (no checkpoint): the same accuracies as the golden rule.

    A tiny delayed-xor run (16 training samples) of the per-step rule (axonal
    input delays and readout learn every step, fixed input weights) on the
    one core: the RTL's predictions equal ``train_online``'s in fixed point
    with the same seed, the delays move, learning steps cost more cycles
    than inference steps.
    """
    from delrec.golden.online_training import train_online
    from delrec.golden.tasks.base import load_task
    from delrec.sim.online_learning import ONCHIP_TASK_OPTIONS, learn_on_core, onchip_configs

    options = dict(ONCHIP_TASK_OPTIONS, train_size=16, val_size=8, test_size=8)
    task = load_task("delayed-xor", **options)
    config, train = onchip_configs(task, {"seed": 0, "epochs": 1, "task_options": options})
    onchip = learn_on_core(task, config, train, out_dir=tmp_path / "core", progress=False)
    golden = train_online(config, train, tmp_path / "golden", progress=False, task=task)
    assert onchip["bit_exact"] and onchip["build"]["learning"] == "step"
    assert onchip["eval_accuracy"] == [h["val_accuracy"] for h in golden["history"]]
    assert onchip["test_accuracy"] == golden["test_accuracy"]
    assert onchip["delays"]["d_in"]["changed"] > 0
    assert onchip["cycles_per_step_learning"] > onchip["cycles_per_step_inference"]


FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"


def test_spoken_digits_learn_every_step_bit_exact(tmp_path):
    """Real recordings: two spoken digits through the cochlea encoder (SHD's 700 channels pooled
    to 140, 10 ms bins), the first 40 steps of each, learn every step on a recurrent learning
    core under host stalls, then the first again with learning off; every spike, score,
    trace, learning signal, delay and readout weight equal the golden rule's. Counts above the
    core's 4-bit count are saturated here, by the host, and the test says how many."""
    from delrec.golden.online import OnlineConfig
    from delrec.golden.online_fixed import LEARNING_SPEC
    from delrec.golden.tasks.spoken import encoder_parameters, encode_recording

    params = encoder_parameters("cochlea", dict(bin_ms=10.0, pool=5))
    paths = [sorted(FSDD.glob(f"{digit}_*_0.wav"))[0] for digit in (3, 8)]
    limit = (1 << LEARNING_SPEC.count_bits) - 1
    raw = [encode_recording(path, params).astype(np.int64)[:40] for path in paths]
    assert all(x.shape[1] == 140 and x.sum() > 100 for x in raw)
    saturated = sum(int((x > limit).sum()) for x in raw)
    assert saturated < sum(x.size for x in raw) // 100, f"{saturated} counts above {limit}"
    config = OnlineConfig(inputs=140, hidden=24, classes=10, input_delays="axonal", recurrent=True,
                          recurrent_delays="axonal", reset="hard", gate_traces=False, tau=1.05, signal="step",
                          update_every=1, learn_weights=False, sigma=1.0, radius=3.0, delay_init=(0.0, 8.0),
                          input_gain=1.0, recurrent_gain=1.5, readout_gain=1.0)
    net = FixedOnlineNetwork(config, LEARNING_SPEC, LearningRates(lr_delay_shift=20, lr_readout_shift=4), seed=5)
    before = {n: p.clone() for n, p in net.parameters().items()}
    samples = [LearningSample(x=np.minimum(x, limit), label=int(path.name[0])) for x, path in zip(raw, paths)]
    samples.append(LearningSample(x=samples[0].x, label=samples[0].label, learn=False))
    result = cosimulate_learning(net, samples, build=learning_build(net), stall=0.2, seed=3, work_dir=tmp_path)
    fired = sum(len(spikes) for spikes in result.spikes)
    assert fired > 0.02 * 24 * 120, f"{fired} spikes: the comparison means little"
    after = result.golden.parameters()
    for name in ("d_in", "d_rec", "w_out"):
        assert not torch.equal(after[name], before[name]), f"{name} did not learn"
    assert result.learned == [True, True, False]
