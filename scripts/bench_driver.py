#!/usr/bin/env python
"""EM driver overhead: this checkout against another one (e.g. before a change), same run.

Runs the same fits -- GaussianMixture diag and full from given parameters,
BayesianGaussianMixture, GaussianMixture's split initialisation, a corpus UBM -- in fresh
processes, alternating between this checkout and ``--baseline`` (a directory holding
another version of the ``speakergmm`` package), ``--repeats`` times each, and reports per
fit the minimum and median seconds of both and their ratios (this / baseline). The
minimum is the figure to read on a loaded machine: load only ever adds time.

Prints one JSON line on stdout.

    python scripts/bench_driver.py --baseline ../speakergmm-before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

# One process per measurement: the package under test is whatever PYTHONPATH names.
WORKLOAD = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
from speakergmm.mixture import BayesianGaussianMixture, GaussianMixture
from speakergmm.verification import train_ubm

n = int(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.normal(size=(n, 20)) * rng.uniform(0.5, 2, 20) + rng.normal(size=(n, 1)) * 3
K = 32
means = X[rng.choice(n, K, replace=False)]
var = X.var(axis=0)
out = {}

def timed(name, fit):
    start = time.perf_counter()
    fit()
    out[name] = time.perf_counter() - start

timed("gmm_diag_30_iterations", lambda: GaussianMixture(
    K, covariance_type="diag", max_iter=30, tol=0, weights_init=np.full(K, 1 / K),
    means_init=means, precisions_init=np.tile(1 / var, (K, 1))).fit(X))
timed("gmm_full_15_iterations", lambda: GaussianMixture(
    8, covariance_type="full", max_iter=15, tol=0, weights_init=np.full(8, 1 / 8),
    means_init=means[:8], precisions_init=np.tile(np.diag(1 / var), (8, 1, 1))).fit(X))
timed("bayes_diag_20_iterations", lambda: BayesianGaussianMixture(
    n_components=16, covariance_type="diag", max_iter=20, tol=0,
    init_params="random_from_data", random_state=0).fit(X))
timed("gmm_split_init_16", lambda: GaussianMixture(
    16, covariance_type="diag", init_params="split", max_iter=5, tol=0).fit(X))
timed("ubm_32_corpus", lambda: train_ubm(np.array_split(X, 200), 32, iter_per_split=2,
                                          final_iter=6, jobs=1, dtype="float32"))
print(json.dumps(out))
"""


def measure(tree: Path, n_samples: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", WORKLOAD, str(n_samples)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, type=Path,
                        help="directory holding the speakergmm package to compare against")
    parser.add_argument("--repeats", type=int, default=5, help="runs per checkout (default: 5)")
    parser.add_argument("--n-samples", type=int, default=20000, help="frames (default: 20000)")
    args = parser.parse_args()
    if not (args.baseline / "speakergmm" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no speakergmm package there")
    runs: dict[str, list[dict[str, float]]] = {"this": [], "baseline": []}
    for _ in range(args.repeats):  # alternating, so that changes in load hit both alike
        runs["baseline"].append(measure(args.baseline.resolve(), args.n_samples))
        runs["this"].append(measure(HERE, args.n_samples))
    results = {}
    for name in runs["this"][0]:
        this = [r[name] for r in runs["this"]]
        base = [r[name] for r in runs["baseline"]]
        results[name] = {
            "this_min_s": round(min(this), 4), "baseline_min_s": round(min(base), 4),
            "this_median_s": round(statistics.median(this), 4),
            "baseline_median_s": round(statistics.median(base), 4),
            "ratio_min": round(min(this) / min(base), 3),
            "ratio_median": round(statistics.median(this) / statistics.median(base), 3),
        }
    print(json.dumps({"benchmark": "bench_driver", "baseline": str(args.baseline),
                      "repeats": args.repeats, "n_samples": args.n_samples,
                      "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                      "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
