"""The SHD-size per-step learning core learns from real spoken digits in co-simulation, bit-exact.

    python benchmarks/online_core_shd_cosim.py --data ../shared/data/fsdd/recordings [--recurrent]

The core of ``benchmarks/online_core_shd.py`` that fits the UP5K -- C = 140
inputs, N = 256 LIF neurons, K = 20 readouts, learnable axonal input delays,
a per-step learning signal formed on chip from the label, an update every
step (:class:`delrec.hw.online_core.OnlineCore` with ``signal="step"``) --
built with Verilator and run on spoken digits encoded as SHD was (the
cochlea model, 700 channels pooled to 140, 10 ms bins; the few counts above
the core's 4-bit 15 are saturated by the host and reported): a few samples that
learn, then the first again with learning off. The testbench compares every
spike of every step, every score, and every parameter after each learning
sample with the fixed-point golden rule
(:class:`delrec.golden.online_fixed.FixedOnlineNetwork`); the cycles of
every step come from the core's ``STEP_CYCLES`` counter and are checked
against :func:`delrec.hw.online_ports.step_cycles`. A mismatch raises.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from delrec.arith import LearningRates
from delrec.golden.online import OnlineConfig
from delrec.golden.online_fixed import FixedOnlineNetwork
from delrec.golden.tasks.spoken import encoder_parameters, encode_recording, scan_recordings
from delrec.hw.synth import write_benchmark_report
from delrec.sim.online_cosim import OnlineSample, cosimulate_online

SHD = dict(inputs=140, hidden=256, classes=20)
MAX_REACH = 768
COUNT_BITS = 4   # events per channel and step the core counts: 0..15


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of FSDD-style wav files")
    parser.add_argument("--out", type=Path, default=None,
                        help="default benchmarks/online_core_shd_cosim[_recurrent].json")
    parser.add_argument("--samples", type=int, default=3, help="learning samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("build/online_core_shd_cosim"))
    parser.add_argument("--recurrent", action="store_true",
                        help="the recurrent layer (256 x 256 weights, learnable recurrent delays)")
    args = parser.parse_args(argv)
    if args.out is None:
        suffix = "_recurrent" if args.recurrent else ""
        args.out = Path(f"benchmarks/online_core_shd_cosim{suffix}.json")
    if args.samples < 1:
        parser.error(f"--samples must be at least 1, not {args.samples}")

    recordings = scan_recordings(args.data)
    rng = np.random.default_rng(args.seed)
    chosen = [recordings[n] for n in rng.choice(len(recordings), args.samples, replace=False)]
    params = encoder_parameters("cochlea", dict(bin_ms=10.0, pool=5))
    began = time.perf_counter()
    raw = [encode_recording(r.path, params).astype(np.int64) for r in chosen]
    encode_seconds = time.perf_counter() - began
    # the core counts up to 2^count_bits - 1 events per channel and step: the host saturates
    # the few bins above it (reported), as the core would drop and count the extra events
    top = (1 << COUNT_BITS) - 1
    counts = [np.minimum(x, top) for x in raw]
    saturated = [int((x > top).sum()) for x in raw]

    config = OnlineConfig(**SHD, input_delays="axonal", signal="step", update_every=1,
                          learn_weights=False, sigma=2.0, radius=3.0, delay_init=(0.0, 30.0),
                          input_gain=1.0, lr_delay=1.0, lr_readout=1e-3, recurrent=args.recurrent,
                          recurrent_delays="axonal" if args.recurrent else None)
    rates = LearningRates(**FixedOnlineNetwork.equivalent_shifts(config))
    net = FixedOnlineNetwork(config, rates=rates, seed=args.seed)
    samples = [OnlineSample(x=x, label=int(r.digit)) for x, r in zip(counts, chosen)]
    samples.append(OnlineSample(x=counts[0], label=int(chosen[0].digit), learn=False))
    began = time.perf_counter()
    result = cosimulate_online(net, samples, stall=0.0, check_state=False, max_reach=MAX_REACH,
                               count_bits=COUNT_BITS,
                               build_root=args.work, progress=True)
    cosim_seconds = time.perf_counter() - began
    f = spec.delay_frac_bits
    moved = (result.golden.d_in - net.d_in).abs()
    if args.recurrent:
        moved = torch.cat([moved, (result.golden.d_rec - net.d_rec).abs()])
    learning = [c for n, s in enumerate(samples) if s.learn for c in result.step_cycles[n]]
    inference = result.step_cycles[-1]
    report = dict(
        description=f"SHD-size per-step learning core (C=140, N=256, K=20, axonal delays"
                    f"{', recurrent' if args.recurrent else ''}) on spoken digits through the "
                    "cochlea encoder, co-simulated with Verilator against the fixed-point golden rule",
        geometry=result.geometry.to_dict(),
        recordings=[r.path.name for r in chosen],
        steps=[int(x.shape[0]) for x in counts],
        events=[int(x.sum()) for x in counts],
        bins_saturated_at_15=saturated,
        bins=[int(x.size) for x in raw],
        bit_exact=True,
        cycles_per_learning_step=dict(mean=float(np.mean(learning)), min=int(np.min(learning)),
                                      max=int(np.max(learning))),
        cycles_per_inference_step=dict(mean=float(np.mean(inference)), min=int(np.min(inference)),
                                       max=int(np.max(inference))),
        delays_changed=int((moved > 0).sum()),
        delays_moved_one_step_or_more=int((moved >= (1 << f)).sum()),
        delay_change_mean_steps=float(moved.double().mean() / (1 << f)),
        readout_weights_changed=int((result.golden.w_out != net.w_out).sum()),
        input_weights_unchanged=bool(torch.equal(result.golden.w_in, net.w_in)),
        spec=spec.to_dict(),
        encode_seconds=encode_seconds,
        cosim_seconds=cosim_seconds,
    )
    write_benchmark_report(args.out, report)
    print({k: report[k] for k in ("cycles_per_learning_step", "cycles_per_inference_step",
                                  "delays_changed", "readout_weights_changed", "cosim_seconds")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
