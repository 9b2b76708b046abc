"""Online three-factor learning: throughput and learning-state memory, float and fixed point.

    python benchmarks/online.py --out benchmarks/online.json [--repeats 3]

For each case (network size, delay kind) one batch of random input spikes is
learned online (forward plus the rule, no backward pass) by the float rule
(:mod:`delrec.golden.online`) and by its fixed-point twin
(:mod:`delrec.golden.online_fixed`), side by side in the same process on one
thread. Reported: samples per second (best of ``--repeats``), and the
learning state per sample (:func:`~delrec.golden.online.trace_memory`) per
learnable delay, in values and in bytes at the chip's trace width.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from delrec.golden.online_fixed import ONLINE_SPEC
from delrec.golden.online import OnlineConfig, OnlineNetwork, trace_memory
from delrec.golden.online_fixed import FixedOnlineNetwork

CASES = [
    dict(name="delayed-xor size, synaptic", inputs=32, hidden=64, classes=4, steps=64,
         input_delays="synaptic"),
    dict(name="delayed-xor size, axonal", inputs=32, hidden=64, classes=4, steps=64,
         input_delays="axonal"),
    dict(name="spoken-digits size, synaptic", inputs=64, hidden=128, classes=10, steps=100,
         input_delays="synaptic"),
    dict(name="spoken-digits size, axonal", inputs=64, hidden=128, classes=10, steps=100,
         input_delays="axonal"),
]


def measure(case: dict, batch: int, repeats: int) -> dict:
    config = OnlineConfig(inputs=case["inputs"], hidden=case["hidden"], classes=case["classes"],
                          input_delays=case["input_delays"], tau=2.0, signal="sample",
                          delay_init=(0.0, 30.0))
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(case["steps"], batch, config.inputs, generator=g) < 0.05).to(torch.int64)
    labels = torch.randint(0, config.classes, (batch,), generator=g)
    out = {"case": case, "batch": batch}
    for kind in ("float", "fixed"):
        times = []
        for _ in range(repeats):
            net = OnlineNetwork(config) if kind == "float" else FixedOnlineNetwork(config, ONLINE_SPEC)
            data = x.double() if kind == "float" else x
            start = time.perf_counter()
            net.run(data, labels, learn=True)
            times.append(time.perf_counter() - start)
        out[f"{kind}_samples_per_second"] = batch / min(times)
        out[f"{kind}_seconds"] = times
    memory = trace_memory(config)
    delays = config.hidden * config.inputs if config.input_delays == "synaptic" else config.inputs
    bits = ONLINE_SPEC.trace_bits
    out["learning_state_values"] = memory
    out["learnable_delays"] = delays
    out["delay_state_values_per_delay"] = memory["delay_state"] / delays
    out["delay_state_bytes_per_delay_fixed"] = memory["delay_state"] * bits / 8 / delays
    step = trace_memory(OnlineConfig(**dict(config.to_dict(), signal="step")))
    out["delay_state_values_per_delay_step_signal"] = step["delay_state"] / delays
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = [measure(case, args.batch, args.repeats) for case in CASES]
    report = {"benchmark": "online three-factor learning", "threads": 1,
              "machine": {"platform": platform.platform(), "torch": torch.__version__},
              "results": results}
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    for r in results:
        print(f"{r['case']['name']:32s} float {r['float_samples_per_second']:7.1f}/s  "
              f"fixed {r['fixed_samples_per_second']:7.1f}/s  "
              f"delay state {r['delay_state_values_per_delay']:.0f} values/delay "
              f"({r['delay_state_bytes_per_delay_fixed']:.0f} B; per-step signal "
              f"{r['delay_state_values_per_delay_step_signal']:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
