"""A non-spiking reference for the spoken-digit splits: an MLP on 4 time segments.

    python benchmarks/speaker_baseline.py --data ../shared/data/fsdd/recordings \
        --out benchmarks/speaker_baseline.json [--encoder mel|cochlea] [--seeds 0 1 2]

The issue's baseline table has "MLP on 4 time segments" for the mel encoder.
This script measures that baseline on exactly our encodings and splits, so the
spiking results can be read against it: each recording's spike counts (the
task's encoding, 10 ms bins) are trimmed to the active part, cut into 4 equal
segments and averaged per channel; the features are standardised on the
training split and classified by scikit-learn's MLP (one hidden layer of 128).
Reported: the standard split (indices 0-4 test) and every speaker held out in
turn (trained on the other four).
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings

import numpy as np


def segment_features(counts: np.ndarray, segments: int = 4) -> np.ndarray:
    """Mean counts per channel in ``segments`` equal parts of the active span ``[T, C] -> [S*C]``."""
    active = np.nonzero(counts.sum(1) > 0)[0]
    if len(active):
        counts = counts[active[0]:active[-1] + 1]
    parts = np.array_split(counts.astype(np.float64), segments)
    return np.concatenate([p.mean(0) if len(p) else np.zeros(counts.shape[1]) for p in parts])


def main(argv=None) -> int:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    from delrec.golden.tasks.spoken import encoder_parameters, encode_folder, scan_recordings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--encoder", default="mel", choices=("mel", "cochlea"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    recordings = scan_recordings(args.data)
    params = encoder_parameters(args.encoder, dict(bin_ms=10.0, pool=5 if args.encoder == "cochlea" else 1))
    counts = encode_folder(recordings, params)
    X = np.stack([segment_features(c) for c in counts])
    y = np.array([r.digit for r in recordings])
    speakers = np.array([r.speaker for r in recordings])
    splits = {"standard": np.array([r.index <= 4 for r in recordings])}
    splits.update({f"held out: {s}": speakers == s for s in sorted(set(speakers))})
    results = {}
    for label, test in splits.items():
        accs = []
        for seed in args.seeds:
            scaler = StandardScaler().fit(X[~test])
            clf = MLPClassifier((128,), max_iter=300, alpha=1e-3, random_state=seed)
            clf.fit(scaler.transform(X[~test]), y[~test])
            accs.append(float(clf.score(scaler.transform(X[test]), y[test])))
        results[label] = {"mean": statistics.fmean(accs), "std": statistics.pstdev(accs), "runs": accs}
        print(f"{label:22s} {100 * results[label]['mean']:.1f} ± {100 * results[label]['std']:.1f} %")
    held = [v["mean"] for k, v in results.items() if k.startswith("held")]
    results["held out: mean over speakers"] = {"mean": statistics.fmean(held)}
    print(f"held out, mean over speakers: {100 * statistics.fmean(held):.1f} %")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"encoder": args.encoder, "seeds": args.seeds, "model": "MLP(128) on 4 segments",
                       "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
